"""Fixtures for pydock-btrfs's tests: throwaway filesystems and the ``pydock`` CLI on them.

Every test that needs btrfs gets a fresh one: a 512 MiB sparse file under pytest's temporary
directory, formatted with mkfs.btrfs and mounted through a loop device, which teardown always
unmounts and detaches. pydock's storage root goes on that mount (``--root``), never on
/var/lib/pydock.

The tests run the driver the way users get it: installed (``pip install -e plugins_example``)
and found by pydock through its entry point. They are skipped, with that reason, when the
distribution is not installed, and they need root (loop devices, mounts, containers).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.layers import default_image_root

if os.geteuid() != 0:
    pytest.exit("pydock-btrfs's tests mount filesystems and run containers: they need root",
                returncode=1)


@pytest.fixture(autouse=True)
def installed() -> None:
    """Skip every test when pydock-btrfs is not installed: pydock could not find the driver."""
    try:
        importlib.metadata.distribution("pydock-btrfs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pydock-btrfs is not installed: pip install -e plugins_example")


@contextlib.contextmanager
def loop_filesystem(directory: Path, mkfs: list[str], size_mib: int) -> Iterator[Path]:
    """A new filesystem made by ``mkfs`` in a sparse file of ``size_mib`` under ``directory``,
    mounted at ``directory/mnt`` for the duration; unmounted and its loop device detached after.

    The loop device is set up explicitly rather than by ``mount -o loop`` so that teardown
    knows which one to detach and detaches it at once (autoclear may happen asynchronously).
    Teardown fails the test if anything is still mounted below the filesystem: pydock mounts
    container roots only inside containers' own mount namespaces.
    """
    directory.mkdir()
    image, mount_point = directory / "disk.img", directory / "mnt"
    mount_point.mkdir()
    with open(image, "wb") as f:
        f.truncate(size_mib << 20)
    subprocess.run([*mkfs, str(image)], check=True, capture_output=True)
    device = subprocess.run(["losetup", "--find", "--show", str(image)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        subprocess.run(["mount", device, str(mount_point)], check=True, capture_output=True)
        try:
            yield mount_point
        finally:
            leaked = [p for p in mounts_under(mount_point) if p != str(mount_point)]
            for point in reversed(leaked):
                subprocess.run(["umount", "--lazy", point], check=True)
            subprocess.run(["umount", str(mount_point)], check=True)
            if leaked:
                pytest.fail(f"mounts left on the host below {mount_point}: {leaked}")
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    """The mount point of a fresh, empty 512 MiB btrfs filesystem."""
    with loop_filesystem(tmp_path / "btrfs", ["mkfs.btrfs", "-q"], 512) as mount_point:
        yield mount_point


@pytest.fixture
def ext4(tmp_path: Path) -> Iterator[Path]:
    """The mount point of a fresh, empty ext4 filesystem."""
    with loop_filesystem(tmp_path / "ext4", ["mkfs.ext4", "-q"], 16) as mount_point:
        yield mount_point


@pytest.fixture(scope="session")
def template_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A storage root holding only pydock's default image, built once per session."""
    return default_image_root(tmp_path_factory.mktemp("template") / "root")


@pytest.fixture
def pydock(btrfs: Path, template_root: Path) -> Iterator[Pydock]:
    """The CLI with its storage root on the test's btrfs filesystem, holding the default image.

    Containers a test leaves behind are removed, so that their subvolumes are gone before the
    filesystem is unmounted.
    """
    root = btrfs / "pydock"
    subprocess.run(["cp", "-a", str(template_root), str(root)], check=True)
    cli = Pydock(root)
    yield cli
    leftovers = cli.container_names()
    if leftovers:
        cli.ok("rm", "-f", *leftovers)
