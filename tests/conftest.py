"""Fixtures for tests that run real containers through the ``pydock`` CLI.

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
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydock.core.cli.main import DEFAULT_ROOT
from pydock.testing.cli import Pydock, cgroup_hierarchies, container_cgroups, mounts_under
from pydock.testing.layers import default_image_root

DRIVERS = ("overlay", "copy", "bind")

if os.geteuid() != 0:
    pytest.exit("pydock's tests run real containers and need root", returncode=1)


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
def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root holding only the default image, built once per test session."""
    return default_image_root(tmp_path_factory.mktemp("template") / "root")


@pytest.fixture
def pydock(template_root: Path, tmp_path: Path) -> Iterator[Pydock]:
    yield from pydock_on_copy(template_root, tmp_path / "root")


def pydock_on_copy(template: Path, root: Path) -> Iterator[Pydock]:
    """The CLI on ``root``, a copy of the storage root ``template``; containers the test
    leaves behind are force-removed afterwards."""
    subprocess.run(["cp", "-a", str(template), str(root)], check=True)
    cli = Pydock(root)
    yield cli
    leftovers = cli.container_names() if (root / "containers").exists() else []
    if leftovers:
        cli("rm", "-f", *leftovers)


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
    parents = {mount / "pydock" for mount in cgroup_hierarchies().values()}
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
def image_root(pydock: Pydock) -> Path:
    """The host directory of the default image's (single) layer."""
    image = json.loads(pydock.ok("image", "inspect", "pydock/default"))
    layer = image["RootFS"]["Layers"][0].removeprefix("sha256:")
    return pydock.root / "layers" / layer / "diff"


def busybox_rootfs(dest: Path) -> Path:
    """A minimal root filesystem directory from the host's static busybox, for image tests."""
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static must be installed (the README's setup installs it)"
    for sub in ("bin", "etc", "proc", "sys", "dev", "tmp"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, dest / "bin" / "busybox")
    for applet in ("sh", "ls", "cat", "echo", "touch", "mkdir", "id", "hostname", "true"):
        (dest / "bin" / applet).symlink_to("busybox")
    return dest
