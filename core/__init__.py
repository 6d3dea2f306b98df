"""pydock's core, one package per layer; a layer imports only the layers below it.

From the bottom: the ground-floor helpers and the plugin contract (the modules at this
level), then ``layers``, ``images``, ``runtime``, ``containers``, ``bench`` and ``cli``
(``tests/test_architecture.py`` holds the table and checks it).

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
