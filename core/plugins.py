"""The plugin manager: which storage drivers exist, and where each came from.

Built-in drivers are plugins registered through the same hook as third-party
ones; the only difference is how their module is found. Built-ins are
imported by name; third-party plugins are found through the ``pydock``
entry-point group. Scanning entry points costs ~25 ms (importing
``importlib.metadata`` and reading every installed distribution), so it is
done only when a command needs a driver that is not built in, or needs the
full list (``pydock storage ls``). That is why built-in driver names are
reserved: a third-party plugin registering one is reported as failed.

A plugin that fails (import error, exception in its hook, invalid
registration, unknown hook) is recorded with the reason and skipped; every
other driver keeps working.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import pluggy

from pydock.core import hookspecs
from pydock.core.driver import Availability, StorageDriver
from pydock.core.errors import PydockError

BUILTIN_PLUGINS = ("pydock.drivers.overlay", "pydock.drivers.copy", "pydock.drivers.bind")
ENTRY_POINT_GROUP = "pydock"
BUILTIN_ORIGIN = "built-in"
DRIVER_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


class DriverEntry(NamedTuple):
    """A registered driver name: its class and who registered it (more than one is a clash)."""

    name: str
    cls: type[StorageDriver]
    origins: tuple[str, ...]

    @property
    def origin(self) -> str:
        return " and ".join(self.origins)

    @property
    def conflict(self) -> str:
        if len(self.origins) < 2:
            return ""
        return (f"storage driver {self.name!r} is registered more than once "
                f"(by {self.origin}): uninstall all but one of them")


class PluginFailure(NamedTuple):
    """A plugin that could not be used, by name, with the reason."""

    plugin: str
    origin: str
    reason: str


class DriverRegistry:
    """Storage drivers registered by plugins. ``DriverRegistry()`` holds the built-ins;
    third-party plugins are added by :meth:`load_entry_points` (once) or :meth:`add_plugin`.
    """

    def __init__(self, builtins: Iterable[str] = BUILTIN_PLUGINS) -> None:
        self._pm = pluggy.PluginManager("pydock")
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, DriverEntry] = {}
        self.failures: list[PluginFailure] = []
        self._entry_points_loaded = False
        for module_name in builtins:
            self.add_plugin(importlib.import_module(module_name), module_name, BUILTIN_ORIGIN)

    def add_plugin(self, plugin: Any, plugin_name: str, origin: str) -> None:
        """Register one plugin object (usually a module) and the drivers it registers."""
        try:
            self._pm.register(plugin, name=plugin_name)
        except ValueError as exc:  # pluggy: the same name or object registered twice
            self._fail(plugin_name, origin, str(exc))
            return
        try:
            # Catches hook implementations whose name is not a pydock hook (a typo).
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._pm.unregister(plugin)
            self._fail(plugin_name, origin, str(exc))
            return
        impls = [impl for impl in self._pm.hook.register_storage_drivers.get_hookimpls()
                 if impl.plugin is plugin]
        if not impls:
            self._pm.unregister(plugin)
            self._fail(plugin_name, origin, "provides no pydock hooks (is this the right module?)")
            return
        # Each plugin's hook is called on its own, so every registration is
        # attributed to the plugin that made it.
        for impl in impls:
            try:
                impl.function(register=lambda cls: self._register(cls, plugin_name, origin))
            except Exception as exc:
                self._fail(plugin_name, origin,
                           f"register_storage_drivers failed: {type(exc).__name__}: {exc}")

    def load_entry_points(self) -> None:
        """Load third-party plugins from the ``pydock`` entry-point group (once)."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = ep.dist.name if ep.dist is not None else "unknown distribution"
            try:
                plugin = ep.load()
            except Exception as exc:
                self._fail(ep.name, origin, f"cannot be imported: {exc!r}")
                continue
            self.add_plugin(plugin, ep.name, origin)

    def entries(self) -> list[DriverEntry]:
        """Every registered driver, sorted by name."""
        return [self._entries[name] for name in sorted(self._entries)]

    def driver_class(self, name: str) -> type[StorageDriver]:
        """The class registered as ``name``; scans entry points only if it is not built in."""
        if name not in self._entries:
            self.load_entry_points()
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted(self._entries)) or "none"
            raise PydockError(f"unknown storage driver {name!r} (available: {known})")
        if entry.conflict:
            raise PydockError(entry.conflict)
        return entry.cls

    def _register(self, cls: object, plugin_name: str, origin: str) -> None:
        if not (isinstance(cls, type) and issubclass(cls, StorageDriver)):
            raise TypeError(f"{cls!r} is not a subclass of pydock.core.driver.StorageDriver")
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not DRIVER_NAME.fullmatch(name):
            raise TypeError(f"{cls.__qualname__}.name must match {DRIVER_NAME.pattern}, "
                            f"got {name!r}")
        existing = self._entries.get(name)
        if existing is not None and BUILTIN_ORIGIN in existing.origins and origin != BUILTIN_ORIGIN:
            # Built-in names are reserved: `run --storage overlay` never scans entry points,
            # so a third-party "overlay" could never be used consistently.
            raise ValueError(f"driver name {name!r} is reserved for the built-in driver")
        if existing is None:
            self._entries[name] = DriverEntry(name, cls, (origin,))
        else:
            # Sorted, so the message does not depend on the order plugins load in.
            origins = tuple(sorted((*existing.origins, origin)))
            self._entries[name] = DriverEntry(name, existing.cls, origins)

    def _fail(self, plugin: str, origin: str, reason: str) -> None:
        self.failures.append(PluginFailure(plugin, origin, reason))


def availability_of(cls: type[StorageDriver], home: Path) -> Availability:
    """``cls.available(home)``, with a driver whose check itself fails reported as unavailable."""
    try:
        return cls.available(home)
    except Exception as exc:
        return Availability(False, f"available() failed: {type(exc).__name__}: {exc}")


def driver_home(root: Path, name: str) -> Path:
    """Where driver ``name`` keeps its files under a pydock storage root."""
    return root / "storage" / name
