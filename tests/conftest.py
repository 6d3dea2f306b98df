"""Fixtures for tests that run real containers through the ``pydock`` CLI.

Running containers, mounting and most of the storage work need root: a test that does any of
it takes the ``pydock`` fixture (which needs root) or is marked ``needs_root``; as another user
it is skipped with the reason "requires root", and the pure unit tests still run.

Every test gets its own storage root under pytest's temporary directory (never
/var/lib/pydock), pre-seeded with the default image so that each test does not
rebuild it. After every test, containers left behind are force-removed and
the test fails if any mount under its temporary directory survives: pydock
promises that container mounts live and die in the container's own mount
namespace, and this fixture is what holds it to that. Likewise a test fails
if a cgroup of one of its containers survives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DRIVERS, Layer, load_layered, make_layers, pydock_on_copy
from netfixtures import PrivateBridge, network_leftovers, remove_network_leftovers

from pydock.core.cli.main import DEFAULT_ROOT
from pydock.testing.cli import Pydock, cgroup_mounts, container_cgroups, mounts_under
from pydock.testing.layers import default_image_root

REQUIRES_ROOT = "requires root"
# pydock run's default network is the bridge; a test's containers run on none unless the
# test asks (the `bridge` fixture gives it a bridge of its own), so that no test ever makes
# or touches the user's pydock0. Set here too for the tests that start pydock themselves.
os.environ.setdefault("PYDOCK_DEFAULT_NETWORK", "none")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_root") and os.geteuid() != 0:
        pytest.skip(REQUIRES_ROOT)


@pytest.fixture(scope="session")
def needs_root() -> None:
    """Skips the test unless it runs as root (what the ``needs_root`` marker does, for
    fixtures that are unusable without it)."""
    if os.geteuid() != 0:
        pytest.skip(REQUIRES_ROOT)


@pytest.fixture(scope="session", autouse=True)
def host_storage_untouched() -> Iterator[None]:
    """The tests must never touch the host's real storage root."""
    def snapshot() -> list[tuple[str, int]]:
        real = Path(DEFAULT_ROOT)
        return sorted((str(p), p.lstat().st_mtime_ns) for p in [real, *real.rglob("*")]
                      if p.exists() or p.is_symlink())

    before = snapshot()
    yield
    assert snapshot() == before, f"the tests changed {DEFAULT_ROOT}"


@pytest.fixture(scope="session")
def template_root(needs_root: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root holding only the default image, built once per test session."""
    return default_image_root(tmp_path_factory.mktemp("template") / "root")


@pytest.fixture
def pydock(template_root: Path, tmp_path: Path,
           request: pytest.FixtureRequest) -> Iterator[Pydock]:
    """The CLI on a copy of the template root, or of ``primed_root`` for a test marked
    ``primed`` (a test_hostile_* file compares the root before and after a command)."""
    primed = request.node.get_closest_marker("primed") is not None
    template = request.getfixturevalue("primed_root") if primed else template_root
    yield from pydock_on_copy(template, tmp_path / "root")


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty directory to extract into."""
    path = tmp_path / "dest"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def layers(tmp_path_factory: pytest.TempPathFactory) -> list[Layer]:
    """Three uncompressed layers: busybox, /etc/greeting, /top.txt (test_image_transfer's)."""
    return make_layers(tmp_path_factory.mktemp("layers"), (False, False, False))


@pytest.fixture(params=["default", "layered"])
def image(request: pytest.FixtureRequest, pydock: Pydock, tmp_path: Path,
          layers: list[Layer]) -> tuple[str, ...]:
    """``run``'s image arguments, for a test to run on the default image, then on a layered
    image (make_layers' three layers and one of every busybox applet)."""
    if request.param == "default":
        return ()
    return ("--image", load_layered(pydock, tmp_path, layers, "layered:1"))


@pytest.fixture(scope="session")
def primed_root(template_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default image's root after one container per driver has come and gone.

    The store's own directories, which pydock makes on first use and keeps (``containers/``,
    ``storage/<driver>/``), are then there already: the test_hostile_* files compare the root
    before and after a refused command, and those directories do not count as a change."""
    root = tmp_path_factory.mktemp("primed") / "root"
    subprocess.run(["cp", "-a", str(template_root), str(root)], check=True)
    for driver in DRIVERS:
        Pydock(root).ok("run", "--rm", "--storage", driver, "true")
    return root


@pytest.fixture(autouse=True)
def no_mount_leaks(tmp_path: Path) -> Iterator[None]:
    yield
    leaked = mounts_under(tmp_path)
    if leaked:
        from pydock.core.syscalls import MNT_DETACH, umount2

        for mount_point in reversed(leaked):
            umount2(mount_point, MNT_DETACH)
        pytest.fail(f"mounts left on the host under {tmp_path}: {leaked}")


@pytest.fixture(scope="session", autouse=True)
def cgroup_parents_removed() -> Iterator[None]:
    """The tests leave the cgroup tree as they found it: a ``pydock`` directory they
    created below a hierarchy's root goes when they end (if no one else uses it by then)."""
    parents = {mount / "pydock" for mount in cgroup_mounts()}
    created = [parent for parent in parents if not parent.exists()]
    yield
    for parent in created:
        with contextlib.suppress(OSError):
            parent.rmdir()


@pytest.fixture(autouse=True)
def no_cgroup_leaks(tmp_path: Path) -> Iterator[None]:
    """A container's cgroup goes with the container: fail (and clean up) if one of the
    test's own root survives it. Other roots' cgroups (a user's containers, another test
    run) are never looked at."""
    root = tmp_path / "root"
    yield
    leaked = container_cgroups(root)
    if leaked:
        for cgroup in leaked:
            for pid in (cgroup / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        for cgroup in leaked:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
        pytest.fail(f"cgroups left on the host: {[str(c) for c in leaked]}")


@pytest.fixture
def bridge(pydock: Pydock) -> Iterator[PrivateBridge]:
    """The test's own bridge network, the default of its storage root: a bridge, an
    nftables table and a /24 subnet named for this test alone, so that tests run in
    parallel with each other and with a real pydock without touching its pydock0. Its
    containers are removed and the root pruned after the test; ``no_network_leaks``
    then checks that nothing of it is left."""
    private = PrivateBridge.make()
    (pydock.root / "network").mkdir(mode=0o700, exist_ok=True)
    (pydock.root / "network" / "config.json").write_text(json.dumps(private.config()))
    pydock.env.pop("PYDOCK_DEFAULT_NETWORK", None)
    yield private
    names = [c["Names"] for c in json.loads(pydock.ok("ps", "-a", "--format", "json") or "[]")]
    if names:
        pydock("rm", "-f", *names)
    pydock("prune")


@pytest.fixture(autouse=True)
def no_network_leaks(tmp_path: Path) -> Iterator[None]:
    """A test's bridge network goes with its containers: fail (and clean up) if its bridge,
    its nftables table or a veth it made survives the test. Only the test's own names are
    looked at (a veth is the test's if it is new and no bridge holds it any more)."""
    before = set(os.listdir("/sys/class/net"))
    yield
    # The user's bridge is never a test's to make: a test on the bridge takes `bridge`.
    assert "pydock0" in before or "pydock0" not in os.listdir("/sys/class/net"), \
        "the test made pydock0, the default bridge: use the bridge fixture"
    config = tmp_path / "root" / "network" / "config.json"
    if not config.exists():
        return
    leaked = network_leftovers(json.loads(config.read_text()), before)
    if leaked:
        remove_network_leftovers(leaked)
        pytest.fail(f"network state left on the host: {leaked}")


@pytest.fixture
def image_root(pydock: Pydock) -> Path:
    """The host directory of the default image's (single) layer."""
    image = json.loads(pydock.ok("image", "inspect", "pydock/default"))
    layer = image["RootFS"]["Layers"][0].removeprefix("sha256:")
    return pydock.root / "layers" / layer / "diff"
