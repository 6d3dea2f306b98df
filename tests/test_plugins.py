"""The plugin manager: built-ins as plugins, entry points, and plugins that go wrong."""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pydock.core import hookimpl
from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.plugins import DisabledPlugin, DriverRegistry
from pydock.drivers.copy import CopyDriver
from pydock.drivers.overlay import OverlayDriver
from pydock.testing.cli import Pydock

Register = Callable[[type[StorageDriver]], None]


class MirrorDriver(CopyDriver):
    name = "mirror"


def plugin_registering(*classes: Any) -> object:
    class Plugin:
        @hookimpl
        def register_storage_drivers(self, register: Register) -> None:
            for cls in classes:
                register(cls)

    return Plugin()


@pytest.mark.quick
def test_builtins_are_registered_through_the_hook_like_any_plugin() -> None:
    registry = DriverRegistry()
    assert [(e.name, e.origin) for e in registry.entries()] == [
        ("bind", "built-in"), ("copy", "built-in"), ("overlay", "built-in")]
    assert registry.driver_class("overlay") is OverlayDriver
    assert registry.failures == []


@pytest.mark.quick
def test_a_plugin_registered_for_one_test_is_usable_by_name() -> None:
    registry = DriverRegistry()
    registry.add_plugin(plugin_registering(MirrorDriver), "mirror-plugin", "tests")
    assert registry.driver_class("mirror") is MirrorDriver
    assert {e.name: e.origin for e in registry.entries()}["mirror"] == "tests"


@pytest.mark.quick
def test_two_plugins_registering_one_name_is_a_clear_deterministic_error() -> None:
    class Other(CopyDriver):
        name = "mirror"

    for order in ((("a", MirrorDriver), ("b", Other)), (("b", Other), ("a", MirrorDriver))):
        registry = DriverRegistry()
        for origin, cls in order:
            registry.add_plugin(plugin_registering(cls), f"plugin-{origin}", f"dist-{origin}")
        with pytest.raises(PydockError) as error:
            registry.driver_class("mirror")
        assert str(error.value) == ("storage driver 'mirror' is registered more than once "
                                    "(by dist-a and dist-b): uninstall all but one of them")


@pytest.mark.quick
def test_a_plugin_may_not_take_a_builtin_name() -> None:
    class FakeOverlay(CopyDriver):
        name = "overlay"

    registry = DriverRegistry()
    registry.add_plugin(plugin_registering(FakeOverlay), "fake", "evil-dist")
    assert registry.driver_class("overlay") is OverlayDriver
    [failure] = registry.failures
    assert (failure.plugin, failure.origin) == ("fake", "evil-dist")
    assert "reserved for the built-in driver" in failure.reason


@pytest.mark.quick
@pytest.mark.parametrize(("plugin", "reason"), [
    (object(), "provides no pydock hooks"),
    (plugin_registering(int), "is not a subclass of pydock.core.driver.StorageDriver"),
    (plugin_registering(type("Nameless", (CopyDriver,), {"name": "Bad Name"})),
     "name must match"),
])
def test_a_broken_plugin_is_reported_and_the_others_keep_working(plugin: object,
                                                                 reason: str) -> None:
    registry = DriverRegistry()
    registry.add_plugin(plugin, "broken", "broken-dist")
    [failure] = registry.failures
    assert failure.plugin == "broken" and reason in failure.reason
    assert registry.driver_class("copy") is CopyDriver


@pytest.mark.quick
def test_a_misspelled_hook_fails_loudly() -> None:
    class Typo:
        @hookimpl
        def register_storage_driver(self, register: Register) -> None:  # missing "s"
            raise AssertionError("never called")

    registry = DriverRegistry()
    registry.add_plugin(Typo(), "typo", "typo-dist")
    [failure] = registry.failures
    assert "register_storage_driver" in failure.reason and "unknown hook" in failure.reason


@pytest.mark.quick
def test_a_hook_that_raises_is_reported() -> None:
    class Raises:
        @hookimpl
        def register_storage_drivers(self, register: Register) -> None:
            raise RuntimeError("kaboom")

    registry = DriverRegistry()
    registry.add_plugin(Raises(), "raiser", "raiser-dist")
    assert "RuntimeError: kaboom" in registry.failures[0].reason


def test_each_driver_knows_the_plugin_and_distribution_that_registered_it() -> None:
    class Other(CopyDriver):
        name = "other"

    registry = DriverRegistry()
    registry.add_plugin(plugin_registering(MirrorDriver), "mirror-plugin", "mirror-dist")
    registry.add_plugin(plugin_registering(Other), "other-plugin", "other-dist")
    assert {e.name: (e.plugin, e.origin) for e in registry.entries()} == {
        "bind": ("pydock.drivers.bind", "built-in"), "copy": ("pydock.drivers.copy", "built-in"),
        "overlay": ("pydock.drivers.overlay", "built-in"),
        "mirror": ("mirror-plugin", "mirror-dist"), "other": ("other-plugin", "other-dist")}


def test_the_hook_is_called_through_pluggy_once_per_plugin_as_it_registers() -> None:
    registry = DriverRegistry()
    calls: list[tuple[str, list[str]]] = []
    undo = registry.plugin_manager.add_hookcall_monitoring(
        lambda hook, impls, kwargs: calls.append((hook, [i.plugin_name for i in impls])),
        lambda outcome, hook, impls, kwargs: None)
    try:
        registry.add_plugin(plugin_registering(MirrorDriver), "mirror-plugin", "tests")
    finally:
        undo()
    assert calls == [("register_storage_drivers", ["mirror-plugin"])]
    assert registry.driver_class("mirror") is MirrorDriver


def test_a_plugin_whose_hook_raises_leaves_none_of_its_drivers_behind() -> None:
    class RegistersThenRaises:
        @hookimpl
        def register_storage_drivers(self, register: Register) -> None:
            register(MirrorDriver)
            raise RuntimeError("kaboom")

    class Other(CopyDriver):
        name = "other"

    registry = DriverRegistry()
    registry.add_plugin(RegistersThenRaises(), "raiser", "raiser-dist")
    registry.add_plugin(plugin_registering(Other), "other-plugin", "other-dist")
    [failure] = registry.failures
    assert failure == ("raiser", "raiser-dist",
                       "register_storage_drivers raised RuntimeError: kaboom")
    assert [e.name for e in registry.entries()] == ["bind", "copy", "other", "overlay"]
    # Unregistered from pluggy as well: the name is free for a plugin that works.
    registry.add_plugin(plugin_registering(MirrorDriver), "raiser", "fixed-dist")
    assert registry.driver_class("mirror") is MirrorDriver


def test_a_plugin_that_catches_its_refused_registration_still_fails_whole() -> None:
    class Stubborn:
        @hookimpl
        def register_storage_drivers(self, register: Register) -> None:
            register(MirrorDriver)
            with contextlib.suppress(TypeError):
                register(int)  # type: ignore[arg-type]

    registry = DriverRegistry()
    registry.add_plugin(Stubborn(), "stubborn", "stubborn-dist")
    [failure] = registry.failures
    assert failure.reason == ("invalid registration: <class 'int'> is not a subclass of "
                              "pydock.core.driver.StorageDriver")
    assert "mirror" not in {e.name for e in registry.entries()}


def test_a_hook_wrapper_is_refused_because_the_hook_is_historic() -> None:
    class Wrapper:
        @hookimpl(wrapper=True)
        def register_storage_drivers(self, register: Register) -> Iterator[None]:
            yield

    registry = DriverRegistry()
    registry.add_plugin(Wrapper(), "wrapper", "wrapper-dist")
    [failure] = registry.failures
    assert "historic incompatible with yield/wrapper/hookwrapper" in failure.reason
    assert [e.name for e in registry.entries()] == ["bind", "copy", "overlay"]


def test_register_kept_for_later_is_refused() -> None:
    kept: list[Register] = []

    class Hoarder:
        @hookimpl
        def register_storage_drivers(self, register: Register) -> None:
            kept.append(register)

    registry = DriverRegistry()
    registry.add_plugin(Hoarder(), "hoarder", "hoarder-dist")
    with pytest.raises(RuntimeError, match="only during the plugin's register_storage_drivers"):
        kept[0](MirrorDriver)
    assert "mirror" not in {e.name for e in registry.entries()}


def test_a_disabled_plugin_is_not_registered_and_is_listed_as_disabled() -> None:
    registry = DriverRegistry(disabled={"mirror-plugin"})
    registry.add_plugin(plugin_registering(MirrorDriver), "mirror-plugin", "mirror-dist")
    assert registry.disabled == [DisabledPlugin("mirror-plugin", "mirror-dist")]
    assert registry.failures == []
    with pytest.raises(PydockError) as error:
        registry.driver_class("mirror")
    assert str(error.value).endswith(
        "; plugins disabled by PYDOCK_DISABLE_PLUGINS: mirror-plugin (mirror-dist)")


def test_builtins_cannot_be_disabled_and_a_name_that_disables_nothing_is_reported() -> None:
    registry = DriverRegistry(disabled={"overlay", "pydock.drivers.copy", "no-such-plugin"})
    assert [e.name for e in registry.entries()] == ["bind", "copy", "overlay"]
    assert registry.disabling_problems() == [
        "PYDOCK_DISABLE_PLUGINS: 'overlay' is built in and cannot be disabled",
        "PYDOCK_DISABLE_PLUGINS: 'pydock.drivers.copy' is built in and cannot be disabled",
        "PYDOCK_DISABLE_PLUGINS: no installed plugin is named 'no-such-plugin'"]


@pytest.mark.quick
def test_an_unknown_driver_names_the_known_ones() -> None:
    with pytest.raises(PydockError, match=r"unknown storage driver 'nope' \(available: ") as e:
        DriverRegistry().driver_class("nope")
    assert {"bind", "copy", "overlay"} <= set(str(e.value).split("(available: ")[1][:-1]
                                              .split(", "))


# -- third-party distributions, installed for real via dist-info on the path ---------------

# Drivers other distributions in this environment register (the btrfs example that
# scripts/setup.sh installs, say): the listings below may show them too.
def _installed_third_party_drivers() -> set[str]:
    registry = DriverRegistry(disabled=())  # whatever the shell's PYDOCK_DISABLE_PLUGINS says
    registry.load_entry_points()
    return {e.name for e in registry.entries() if e.origin != "built-in"}


OTHERS_INSTALLED = _installed_third_party_drivers()

def install_distribution(site: Path, dist: str, module: str, source: str,
                         entry_points: dict[str, str]) -> None:
    """A distribution as pip installs it: a module plus a .dist-info with entry points."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[pydock]\n{lines}")


@pytest.fixture
def site(tmp_path: Path, pydock: Pydock) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "pydock-mirror", "pydock_mirror", """
        from pydock.core import hookimpl
        from pydock.drivers.copy import CopyDriver

        class MirrorDriver(CopyDriver):
            name = "mirror"

        @hookimpl
        def register_storage_drivers(register):
            register(MirrorDriver)
        """, {"mirror": "pydock_mirror"})
    install_distribution(site, "pydock-never", "pydock_never", """
        from pydock.core import hookimpl
        from pydock.core.driver import Availability, StorageDriver

        class NeverDriver(StorageDriver):
            name = "never"

            @classmethod
            def available(cls, home):
                return Availability(False, "needs a flux capacitor")

        @hookimpl
        def register_storage_drivers(register):
            register(NeverDriver)
        """, {"never": "pydock_never"})
    install_distribution(site, "pydock-shaky", "pydock_shaky", """
        from pydock.core import hookimpl
        from pydock.core.driver import StorageDriver

        class ShakyDriver(StorageDriver):
            name = "shaky"

            @classmethod
            def available(cls, home):
                raise OSError("probe crashed")

        @hookimpl
        def register_storage_drivers(register):
            register(ShakyDriver)
        """, {"shaky": "pydock_shaky"})
    install_distribution(site, "pydock-notaplugin", "pydock_notaplugin",
                         "VERSION = '1.0'  # a module, but no hook implementations\n",
                         {"notaplugin": "pydock_notaplugin"})
    install_distribution(site, "pydock-broken", "pydock_broken",
                         "raise ImportError('missing dependency frobnicate')\n",
                         {"broken": "pydock_broken"})
    pydock.env["PYTHONPATH"] = str(site)
    return site


def test_storage_ls_shows_every_driver_its_origin_and_availability(pydock: Pydock,
                                                                   site: Path) -> None:
    listing = json.loads(pydock.ok("storage", "ls", "--format", "json"))
    drivers = {d["Name"]: d for d in listing["drivers"] if d["Name"] not in OTHERS_INSTALLED}
    assert {n: (d["Origin"], d["Available"]) for n, d in drivers.items()} == {
        "bind": ("built-in", True), "copy": ("built-in", True),
        "overlay": ("built-in", True), "mirror": ("pydock-mirror", True),
        "never": ("pydock-never", False), "shaky": ("pydock-shaky", False)}
    assert drivers["never"]["Reason"] == "needs a flux capacitor"
    assert drivers["shaky"]["Reason"] == "available() failed: OSError: probe crashed"
    assert listing["failed_plugins"] == [
        {"Plugin": "broken", "Origin": "pydock-broken",
         "Error": "cannot be imported: ImportError('missing dependency frobnicate')"},
        {"Plugin": "notaplugin", "Origin": "pydock-notaplugin",
         "Error": "provides no pydock hooks (is this the right module?)"}]


def test_storage_ls_table_reports_a_failed_plugin_by_name(pydock: Pydock, site: Path) -> None:
    result = pydock("storage", "ls")
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()
            if line.split()[0] not in OTHERS_INSTALLED] == [
        "NAME", "bind", "copy", "mirror", "never", "overlay", "shaky"]
    assert "plugin broken (pydock-broken) failed" in result.stderr


def test_a_third_party_driver_runs_containers(pydock: Pydock, site: Path) -> None:
    pydock.ok("run", "--storage", "mirror", "--name", "m", "sh", "-c", "echo hi > /f")
    assert pydock.inspect("m")["GraphDriver"]["Name"] == "mirror"
    pydock.ok("rm", "m")


def test_an_unavailable_driver_is_refused_with_its_reason(pydock: Pydock, site: Path) -> None:
    assert pydock.refused("run", "--storage", "never", "true") == (
        "storage driver 'never' is not available here: needs a flux capacitor")
    assert pydock.container_names() == []


def test_the_driver_a_container_was_created_with_is_used_to_remove_it(pydock: Pydock,
                                                                      site: Path) -> None:
    pydock.ok("run", "--storage", "mirror", "--name", "m", "true")
    rootfs = Path(pydock.inspect("m")["GraphDriver"]["Data"]["RootDir"])
    assert rootfs.is_dir() and "mirror" in rootfs.parts
    pydock.ok("rm", "m")
    assert not rootfs.exists()


def test_storage_info_describes_one_driver(pydock: Pydock) -> None:
    pydock.ok("run", "--storage", "copy", "--name", "c1", "true")
    info = json.loads(pydock.ok("storage", "info", "copy"))
    assert info["Name"] == "copy" and info["Available"] is True
    assert info["Containers"] == ["c1"]
    assert info["Class"] == "pydock.drivers.copy.CopyDriver"
    assert (info["Plugin"], info["Origin"]) == ("pydock.drivers.copy", "built-in")


def test_disabled_plugins_are_not_imported_and_storage_ls_says_so(pydock: Pydock,
                                                                   site: Path) -> None:
    # "broken" raises on import: listed as disabled instead of failed, it was not imported.
    assert "btrfs" in OTHERS_INSTALLED  # the example plugin scripts/setup.sh installs
    pydock.env["PYDOCK_DISABLE_PLUGINS"] = "btrfs, broken,overlay,nosuch"
    result = pydock("storage", "ls", "--format", "json")
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert "btrfs" not in {d["Name"] for d in listing["drivers"]}
    assert {d["Name"] for d in listing["drivers"]} >= {"overlay", "mirror"}
    assert listing["disabled_plugins"] == [{"Plugin": "broken", "Origin": "pydock-broken"},
                                           {"Plugin": "btrfs", "Origin": "pydock-btrfs"}]
    assert [f["Plugin"] for f in listing["failed_plugins"]] == ["notaplugin"]
    assert result.stderr == (
        "pydock: warning: PYDOCK_DISABLE_PLUGINS: 'overlay' is built in and cannot be disabled\n"
        "pydock: warning: PYDOCK_DISABLE_PLUGINS: no installed plugin is named 'nosuch'\n")

    table = pydock("storage", "ls")
    assert table.returncode == 0
    assert "btrfs" not in [line.split()[0] for line in table.stdout.splitlines()]
    assert "plugin btrfs (pydock-btrfs) disabled by PYDOCK_DISABLE_PLUGINS" in table.stderr
    assert "plugin broken (pydock-broken) disabled by PYDOCK_DISABLE_PLUGINS" in table.stderr
    assert "plugin broken (pydock-broken) failed" not in table.stderr


def test_a_disabled_plugins_driver_is_refused_by_name_with_the_reason(pydock: Pydock) -> None:
    pydock.env["PYDOCK_DISABLE_PLUGINS"] = "btrfs"
    available = ", ".join(sorted({"bind", "copy", "overlay", *OTHERS_INSTALLED} - {"btrfs"}))
    for command in (("storage", "info", "btrfs"), ("run", "--storage", "btrfs", "true")):
        assert pydock.refused(*command) == (
            f"unknown storage driver 'btrfs' (available: {available}); plugins disabled by "
            "PYDOCK_DISABLE_PLUGINS: btrfs (pydock-btrfs)")
    assert pydock.container_names() == []
