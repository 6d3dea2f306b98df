"""The hooks a pydock plugin may implement (pluggy project name ``"pydock"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydock.core.driver import StorageDriver

hookspec = pluggy.HookspecMarker("pydock")


# Historic: pydock makes this call once, before any plugin is registered, and pluggy replays
# it for each plugin as that plugin registers (see pydock.core.plugins for why).
@hookspec(historic=True)
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    """Register storage driver classes by calling ``register(DriverClass)`` once per class.

    Called once per plugin and pydock command, while pydock registers the plugin and
    before any driver is used, for built-in and third-party plugins alike. ``register``
    works only during this call. Do no work here beyond registering: host checks belong
    in the driver's ``available()``, which pydock calls only when needed. If this hook
    raises, or registers something invalid, none of the plugin's drivers are registered
    and ``pydock storage ls`` reports the plugin as failed. The hook is historic, so
    pluggy refuses a ``wrapper``/``hookwrapper`` implementation of it.
    """
