"""The hooks a pydock plugin may implement (pluggy project name ``"pydock"``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydock.core.driver import StorageDriver

hookspec = pluggy.HookspecMarker("pydock")


@hookspec
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    """Register storage driver classes by calling ``register(DriverClass)`` once per class.

    Called once per pydock command, before any driver is used, for built-in and
    third-party plugins alike. Do no work here beyond registering: host checks
    belong in the driver's ``available()``, which pydock calls only when needed.
    """
