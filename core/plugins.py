"""The plugin manager: which storage drivers exist, and where each came from.

Built-in drivers are plugins registered through the same hook as third-party
ones; the only difference is how their module is found. Built-ins are
imported by name; third-party plugins are found through the ``pydock``
entry-point group. Scanning entry points costs ~25 ms (importing
``importlib.metadata`` and reading every installed distribution), so it is
done only when a command needs a driver that is not built in, or needs the
full list (``pydock storage ls``). That is why built-in driver names are
reserved: a third-party plugin registering one is reported as failed.

How the hook is called: ``register_storage_drivers`` is a *historic* pluggy
hook. The registry calls it once (``call_historic``) before registering any
plugin, and pluggy replays that call, inside ``PluginManager.register``, for
each plugin as it registers, with that plugin's implementation alone. That
gives, without a hand-written loop:

- attribution: while a plugin registers, only its hook runs, so every driver
  the ``register`` callback receives is credited to that plugin and its
  distribution;
- isolation: an exception in a plugin's hook comes out of that plugin's
  ``register`` and no other one, so it is recorded against it by name;
- laziness: plugins from entry points, loaded later or never, are replayed the
  same way as the built-ins registered first;
- every call goes through pluggy's hook execution, where its tracing and call
  monitoring apply, and a second hook needs one more ``call_historic`` here,
  not a second loop.

pluggy refuses hook wrappers on a historic hook (with a PluginValidationError,
recorded like any other failure). ``subset_hook_caller`` (one call per plugin,
every other plugin left out) would allow them, but a wrapper would then only
ever wrap its own plugin's implementation, and each hook would again need a
loop of its own.

A plugin that fails (import error, exception in its hook, invalid registration,
unknown hook) is recorded with the reason and unregistered, and the drivers it
had registered before failing are withdrawn: a plugin is used whole or not at
all, never as a subset of itself its author has not seen. Every other driver
keeps working.

``PYDOCK_DISABLE_PLUGINS=name,...`` (tox's ``TOX_DISABLED_EXTERNAL_PLUGINS``)
names third-party plugins, by entry-point name, that are not even imported;
``storage ls`` lists them as disabled. Built-in plugins cannot be disabled:
they are part of pydock itself, their driver names are reserved, and the
containers already made with them must stay removable. A built-in name or a
name no installed plugin has disables nothing, and ``storage ls`` says so.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, NoReturn

import pluggy

from pydock.core import hookspecs
from pydock.core.driver import Availability, StorageDriver
from pydock.core.errors import PydockError

BUILTIN_PLUGINS = ("pydock.drivers.overlay", "pydock.drivers.copy", "pydock.drivers.bind")
ENTRY_POINT_GROUP = "pydock"
BUILTIN_ORIGIN = "built-in"
DISABLE_VARIABLE = "PYDOCK_DISABLE_PLUGINS"
DRIVER_NAME = r"[a-z0-9][a-z0-9_-]{0,31}"  # compiled and cached by re on first use


class Registrant(NamedTuple):
    """Who registered a driver: the plugin's name (its entry-point name, or a built-in's
    module name) and the distribution that installed it (or ``"built-in"``)."""

    plugin: str
    origin: str


class DriverEntry(NamedTuple):
    """A registered driver name: its class and who registered it (more than one is a clash)."""

    name: str
    cls: type[StorageDriver]
    registrants: tuple[Registrant, ...]  # sorted, so messages do not depend on load order

    @property
    def origin(self) -> str:
        return " and ".join(r.origin for r in self.registrants)

    @property
    def plugin(self) -> str:
        return " and ".join(r.plugin for r in self.registrants)

    @property
    def builtin(self) -> bool:
        return any(r.origin == BUILTIN_ORIGIN for r in self.registrants)

    @property
    def conflict(self) -> str:
        if len(self.registrants) < 2:
            return ""
        return (f"storage driver {self.name!r} is registered more than once "
                f"(by {self.origin}): uninstall all but one of them")


class PluginFailure(NamedTuple):
    """A plugin that could not be used, by name, with the reason."""

    plugin: str
    origin: str
    reason: str


class DisabledPlugin(NamedTuple):
    """An installed plugin that PYDOCK_DISABLE_PLUGINS kept from being imported."""

    plugin: str
    origin: str


class DriverRegistry:
    """Storage drivers registered by plugins. ``DriverRegistry()`` holds the built-ins;
    third-party plugins are added by :meth:`load_entry_points` (once) or :meth:`add_plugin`.

    ``disabled`` names plugins not to load; by default, those in PYDOCK_DISABLE_PLUGINS.
    """

    def __init__(self, builtins: Iterable[str] = BUILTIN_PLUGINS,
                 disabled: Iterable[str] | None = None) -> None:
        self._pm = pluggy.PluginManager("pydock")
        self._pm.add_hookspecs(hookspecs)
        self._entries: dict[str, DriverEntry] = {}
        self.failures: list[PluginFailure] = []
        self.disabled: list[DisabledPlugin] = []
        self._entry_points_loaded = False
        # The plugin pluggy is registering (and so replaying the hook for), and the first
        # invalid registration it made.
        self._registering: Registrant | None = None
        self._refusal = ""
        # Made before any plugin is registered, so that pluggy replays it for each plugin
        # alone, as it registers.
        self._pm.hook.register_storage_drivers.call_historic(kwargs={"register": self._register})
        builtins = tuple(builtins)
        for module_name in builtins:
            # __import__ rather than importlib.import_module, so that `python -X importtime`
            # (the import budget's tool) sees the built-in drivers on the run path.
            module = __import__(module_name, fromlist=["__name__"])
            self.add_plugin(module, module_name, BUILTIN_ORIGIN)
        names = disabled_by_environment() if disabled is None else set(disabled)
        # A user writes a built-in's driver name ("overlay") more likely than its module's.
        builtin_names = {*builtins, *self._entries}
        self._builtins_named = sorted(names & builtin_names)
        self._blocked = names - builtin_names
        for name in self._blocked:
            # pluggy's own block list (as tox uses it): a blocked name is never registered.
            self._pm.set_blocked(name)

    @property
    def plugin_manager(self) -> pluggy.PluginManager:
        """The pluggy manager, for tracing (``enable_tracing``) and hook call monitoring."""
        return self._pm

    def add_plugin(self, plugin: object, plugin_name: str, origin: str) -> None:
        """Register one plugin object (usually a module) and the drivers it registers; or
        record why it cannot be used, leaving nothing of it registered."""
        if self._skip_disabled(plugin_name, origin):
            return
        if self._pm.has_plugin(plugin_name):
            self._fail(plugin_name, origin, f"another plugin is already registered as "
                                            f"{plugin_name!r}")
            return
        if self._pm.is_registered(plugin):
            self._fail(plugin_name, origin, f"the same plugin is already registered as "
                                            f"{self._pm.get_name(plugin)!r}")
            return
        before = dict(self._entries)
        self._registering, self._refusal = Registrant(plugin_name, origin), ""
        try:
            problem = self._register_with_pluggy(plugin, plugin_name)
        finally:
            self._registering = None
        if problem:
            if self._pm.is_registered(plugin):
                self._pm.unregister(plugin)
            self._entries = before  # withdraws whatever it registered before failing
            self._fail(plugin_name, origin, problem)

    def load_entry_points(self) -> None:
        """Load third-party plugins from the ``pydock`` entry-point group (once)."""
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = ep.dist.name if ep.dist is not None else "unknown distribution"
            if self._skip_disabled(ep.name, origin):
                continue  # before ep.load(): a disabled plugin's code never runs
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
            message = f"unknown storage driver {name!r} (available: {known})"
            if self.disabled:
                off = ", ".join(f"{d.plugin} ({d.origin})" for d in self.disabled)
                message += f"; plugins disabled by {DISABLE_VARIABLE}: {off}"
            raise PydockError(message)
        if entry.conflict:
            raise PydockError(entry.conflict)
        return entry.cls

    def disabling_problems(self) -> list[str]:
        """Each name in PYDOCK_DISABLE_PLUGINS that disabled nothing, and why (this needs
        the entry points, so it loads them)."""
        self.load_entry_points()
        found = {d.plugin for d in self.disabled}
        return ([f"{DISABLE_VARIABLE}: {name!r} is built in and cannot be disabled"
                 for name in self._builtins_named]
                + [f"{DISABLE_VARIABLE}: no installed plugin is named {name!r}"
                   for name in sorted(self._blocked - found)])

    def _register_with_pluggy(self, plugin: object, plugin_name: str) -> str:
        """Register ``plugin``, which makes pluggy replay the hook for it; what is wrong
        with the plugin, or ``""``."""
        try:
            self._pm.register(plugin, name=plugin_name)
            # Catches hook implementations whose name is not a pydock hook (a typo).
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            return str(exc)
        except Exception as exc:
            return self._refusal or (f"register_storage_drivers raised "
                                     f"{type(exc).__name__}: {exc}")
        if self._refusal:  # the plugin caught the error register() raised, and went on
            return self._refusal
        if not self._pm.get_hookcallers(plugin):
            return "provides no pydock hooks (is this the right module?)"
        return ""

    def _register(self, cls: object) -> None:
        """The ``register`` callback of the historic hook call: one per registry, so the
        driver is credited to the plugin being registered."""
        registrant = self._registering
        if registrant is None:
            # A callback kept and called later could not be credited to any plugin.
            raise RuntimeError("register() works only during the plugin's "
                               "register_storage_drivers hook")
        if not (isinstance(cls, type) and issubclass(cls, StorageDriver)):
            self._refuse(TypeError(f"{cls!r} is not a subclass of "
                                   "pydock.core.driver.StorageDriver"))
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not re.fullmatch(DRIVER_NAME, name):
            self._refuse(TypeError(f"{cls.__qualname__}.name must match "
                                   f"{DRIVER_NAME}, got {name!r}"))
        existing = self._entries.get(name)
        if existing is not None and existing.builtin and registrant.origin != BUILTIN_ORIGIN:
            # Built-in names are reserved: `run --storage overlay` never scans entry points,
            # so a third-party "overlay" could never be used consistently.
            self._refuse(ValueError(f"driver name {name!r} is reserved for the built-in "
                                    "driver"))
        if existing is None:
            self._entries[name] = DriverEntry(name, cls, (registrant,))
        else:
            registrants = tuple(sorted((*existing.registrants, registrant)))
            self._entries[name] = DriverEntry(name, existing.cls, registrants)

    def _refuse(self, error: Exception) -> NoReturn:
        # Remembered as well as raised: a plugin that catches the error still fails whole.
        self._refusal = self._refusal or f"invalid registration: {error}"
        raise error

    def _skip_disabled(self, plugin_name: str, origin: str) -> bool:
        if not self._pm.is_blocked(plugin_name):
            return False
        self.disabled.append(DisabledPlugin(plugin_name, origin))
        return True

    def _fail(self, plugin: str, origin: str, reason: str) -> None:
        self.failures.append(PluginFailure(plugin, origin, reason))


def disabled_by_environment() -> set[str]:
    """The plugin names in PYDOCK_DISABLE_PLUGINS (comma-separated; blanks ignored)."""
    return {name.strip() for name in os.environ.get(DISABLE_VARIABLE, "").split(",")
            if name.strip()}


def availability_of(cls: type[StorageDriver], home: Path) -> Availability:
    """``cls.available(home)``, with a driver whose check itself fails reported as unavailable."""
    try:
        return cls.available(home)
    except Exception as exc:
        return Availability(False, f"available() failed: {type(exc).__name__}: {exc}")


def driver_home(root: Path, name: str) -> Path:
    """Where driver ``name`` keeps its files under a pydock storage root."""
    return root / "storage" / name
