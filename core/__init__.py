"""pydock's core: CLI, runtime, images, state and the plugin manager.

Third-party storage drivers mark their hook implementations with
:data:`hookimpl`::

    from pydock.core import hookimpl

    @hookimpl
    def register_storage_drivers(register):
        register(MyDriver)
"""

import pluggy

__version__ = "0.1.0"

hookimpl = pluggy.HookimplMarker("pydock")
"""Marker for plugin hook implementations (pluggy project name ``"pydock"``)."""
