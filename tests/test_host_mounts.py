"""The conformance case ``host_mounts`` (:mod:`pydock.testing.suite.host_mounts`) fails drivers
that work for pydock, whose core mounts in the container's namespace and past a page through
fsconfig(2), but whose mounts containerd could not perform on the host."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from pydock.core.driver import Mount, StorageDriver
from pydock.core.plugins import driver_home
from pydock.core.snapshotter.mounts import as_served
from pydock.drivers.copy import CopyDriver
from pydock.drivers.overlay import OverlayDriver
from pydock.testing.conformance import CASES, ConformanceFailure, run_case

[HOST_MOUNTS] = [case for case in CASES if case.name == "host_mounts"]


class FillsItsRoot(CopyDriver):
    """Copies the image into rootfs_dir and returns no mounts: the core bind-mounts rootfs_dir
    onto itself, which the contract allows, but containerd is given nothing to mount."""

    name = "fills-its-root"

    def copy_dir(self, container_id: str) -> Path:
        return self.rootfs_dir(container_id)

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        from pydock.core.layers.flatten import flatten

        self.make_home()
        self.container_dir(container_id).mkdir(mode=0o700)
        flatten(layers, self.rootfs_dir(container_id))

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return []


class LongOptions(OverlayDriver):
    """Says index=off 450 times: harmless, but past one page of options, which only the core's
    fsconfig(2) path can mount (one call per option), as it does for a long chain of layers."""

    name = "long-options"

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [m._replace(options=(*m.options, *["index=off"] * 450))
                for m in super().mounts(container_id, layers)]


def _fails(driver: type[StorageDriver], tmp_path: Path) -> str:
    with pytest.raises(ConformanceFailure) as failure:
        run_case(HOST_MOUNTS, driver.name, tmp_path,
                 lambda root: driver(driver_home(root, driver.name)))
    return str(failure.value)


@pytest.mark.needs_root
def test_a_driver_that_returns_no_mounts_fails(tmp_path: Path) -> None:
    assert _fails(FillsItsRoot, tmp_path) == (
        "fills-its-root: case host_mounts: the container's root mounted on the host: the "
        "driver returns no mounts: containerd would mount nothing (mounts: [])")


@pytest.mark.needs_root
def test_a_driver_past_one_page_of_options_fails(tmp_path: Path) -> None:
    message = _fails(LongOptions, tmp_path)
    assert message.startswith("long-options: case host_mounts: the container's root mounted "
                              "on the host: overlay mount options of ")
    assert "bytes: containerd passes one page (4096) to mount(2)" in message


@pytest.mark.quick
def test_mounts_reach_containerd_with_a_bind_option_and_ro_for_a_view() -> None:
    mounts = [Mount("bind", "/a"), Mount("bind", "/b", ("rbind", "rw")),
              Mount("overlay", "overlay", ("lowerdir=/l", "rw"))]
    assert as_served(mounts) == [Mount("bind", "/a", ("bind",)),
                                 Mount("bind", "/b", ("rbind", "rw")),
                                 Mount("overlay", "overlay", ("lowerdir=/l", "rw"))]
    assert [m.options for m in as_served(mounts, read_only=True)] == [
        ("bind", "ro"), ("rbind", "ro"), ("lowerdir=/l", "ro")]
