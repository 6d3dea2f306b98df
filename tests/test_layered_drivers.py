"""Every driver shows a layered image exactly as the kernel's own overlay mount of it does,
after every layer of the chain: whiteouts, opaque directories, replaced types, hardlinks,
modes, owners, xattrs. Also: the deepest chains overlay allows, and one layer past them."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path

import pytest
from conftest import DRIVERS, busybox_rootfs

from pydock.core.containers.lifecycle import Containers
from pydock.core.driver import Mount
from pydock.core.images.store import ImageStore, image_config
from pydock.core.runtime.mounted import in_container_root
from pydock.testing.cli import Pydock
from pydock.testing.layers import LayerBuild, import_built_layers
from pydock.testing.manifest import manifest

Build = LayerBuild
MTIME = 1_700_000_000  # whole seconds: layer tars carry no finer times


def entry(tar: tarfile.TarFile, name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"",
          mode: int = 0o644, uid: int = 0, gid: int = 0, link: str = "",
          xattrs: dict[str, str] | None = None, device: tuple[int, int] = (0, 0)) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = kind, mode, uid, gid, MTIME
    info.linkname, (info.devmajor, info.devminor) = link, device
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def base_layer(tmp: Path) -> Build:
    rootfs = busybox_rootfs(tmp / "rootfs")

    def build(tar: tarfile.TarFile) -> None:
        tar.add(rootfs, arcname=".", filter=lambda info: _fixed_time(info))
        entry(tar, "etc/keep", data=b"v1\n")
        entry(tar, "etc/gone", data=b"deleted in layer 2\n")
        entry(tar, "olddir", tarfile.DIRTYPE, mode=0o755)
        entry(tar, "olddir/a", data=b"a\n")
        entry(tar, "olddir/sub", tarfile.DIRTYPE, mode=0o700, uid=1000, gid=1000)
        entry(tar, "olddir/sub/deep", data=b"deep\n")
        entry(tar, "replaced", tarfile.DIRTYPE)
        entry(tar, "replaced/x", data=b"x\n")
        entry(tar, "setuid", data=b"#!/bin/sh\n", mode=0o4755)
        entry(tar, "shared", tarfile.DIRTYPE, mode=0o1777)
        entry(tar, "link-to-etc", tarfile.SYMTYPE, link="/etc")
        entry(tar, "hard1", data=b"same inode\n")
        entry(tar, "hard2", tarfile.LNKTYPE, link="hard1")
        entry(tar, "tagged", data=b"xattr\n", xattrs={"user.color": "blue"})
        entry(tar, "fifo", tarfile.FIFOTYPE)
        entry(tar, "null", tarfile.CHRTYPE, mode=0o666, device=(1, 3))
    return build


def second_layer(tar: tarfile.TarFile) -> None:
    entry(tar, "etc", tarfile.DIRTYPE, mode=0o755)
    entry(tar, "etc/keep", data=b"v2\n")
    entry(tar, "etc/.wh.gone")
    entry(tar, ".wh.olddir")
    entry(tar, "setuid", data=b"#!/bin/sh\n", mode=0o2750, uid=5, gid=6)
    entry(tar, "tagged", data=b"xattr\n", xattrs={"user.color": "red", "user.more": "1"})


def third_layer(tar: tarfile.TarFile) -> None:
    entry(tar, "replaced", tarfile.DIRTYPE, mode=0o750)
    entry(tar, "replaced/.wh..wh..opq")
    entry(tar, "replaced/y", data=b"only y\n")
    entry(tar, "link-to-etc", tarfile.DIRTYPE)
    entry(tar, "link-to-etc/now-a-dir", data=b"dir over symlink\n")
    entry(tar, "olddir", data=b"a file where a directory was\n")
    entry(tar, ".wh.hard2")


def fourth_layer(tar: tarfile.TarFile) -> None:
    entry(tar, "olddir", tarfile.DIRTYPE, mode=0o711)
    entry(tar, "olddir/reborn", data=b"directory again\n")
    entry(tar, "hard1", data=b"rewritten\n", mode=0o600)
    entry(tar, "hard3", tarfile.LNKTYPE, link="hard1")


def _fixed_time(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = MTIME
    return info


def view(rootfs: Path, mounts: list[Mount]) -> str:
    """The manifest of a root as the given mounts make it, taken in a private mount namespace."""
    return str(in_container_root(str(rootfs), mounts,
                                 lambda root: repr(sorted(manifest(Path(root)).items()))))


def test_every_driver_matches_the_kernels_overlay_after_every_layer(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    containers = Containers(pydock.root)
    builds = [base_layer(tmp_path), second_layer, third_layer, fourth_layer]
    diff_ids = import_built_layers(containers.images, builds)
    empty, mountpoint = tmp_path / "empty", tmp_path / "mnt"
    empty.mkdir()
    mountpoint.mkdir()
    for depth in range(1, len(builds) + 1):
        chain = diff_ids[:depth]
        containers.images.add_image(image_config(chain, MTIME, "test chain"), f"chain:{depth}")
        # The oracle: the kernel's overlay of the same layer directories (an empty bottom
        # layer lets even a one-layer chain be mounted read-only).
        lowers = [*reversed(containers.images.layer_paths(chain)), empty]
        expected = view(mountpoint, [Mount("overlay", "overlay",
                                           ("ro", "lowerdir=" + ":".join(map(str, lowers))))])
        for driver_name in DRIVERS:
            name = f"{driver_name}-{depth}"
            pydock.ok("run", "--storage", driver_name, "--image", f"chain:{depth}", "--name",
                      name, "true")
            record = containers.state.load(name)
            driver = containers.driver(driver_name)
            layers = containers.images.layer_paths(record.layers)
            seen = view(driver.rootfs_dir(record.id), driver.mounts(record.id, layers))
            assert seen == expected, f"{driver_name} after layer {depth}"
            pydock.ok("rm", name)


def test_overlay_mounts_the_kernels_limit_of_500_layers_and_refuses_501(pydock: Pydock) -> None:
    store = ImageStore(pydock.root)
    base = store.resolve("pydock/default").diff_ids

    def one_file(index: int) -> Build:
        return lambda tar: entry(tar, f"layers/f{index:03d}", data=f"layer {index}\n".encode())

    extra = import_built_layers(store, [one_file(i) for i in range(500)])
    store.add_image(image_config(base + extra[:499], int(time.time()), "deep"), "deep:500")
    store.add_image(image_config(base + extra, int(time.time()), "deep"), "deep:501")
    out = pydock.ok("run", "--rm", "--image", "deep:500", "sh", "-c",
                    "ls /layers | wc -l; cat /layers/f000 /layers/f498")
    assert out.split("\n") == ["499", "layer 0", "layer 498", ""]
    result = pydock("run", "--rm", "--image", "deep:501", "true")
    assert result.returncode == 125
    assert "501 layers; overlay stacks at most 500" in result.stderr
    assert pydock.container_names() == []


@pytest.mark.parametrize("driver", ["copy", "bind"])
def test_flattening_drivers_take_long_chains_too(pydock: Pydock, driver: str) -> None:
    store = ImageStore(pydock.root)
    base = store.resolve("pydock/default").diff_ids
    extra = import_built_layers(store, [
        lambda tar, i=i: entry(tar, f"f{i}", data=b"x", mode=0o600 + i) for i in range(40)])
    store.add_image(image_config(base + extra, int(time.time()), "long"), "long")
    out = pydock.ok("run", "--rm", "--storage", driver, "--image", "long", "stat", "-c", "%a",
                    "/f0", "/f39")
    assert out.split() == ["600", "647"]
