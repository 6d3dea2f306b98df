"""Every driver shows a layered image exactly as the kernel's own overlay mount of it does,
after every layer of the chain: whiteouts, opaque directories, replaced types, hardlinks,
modes, owners, xattrs. Also: the deepest chains overlay allows, and one layer past them."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest
from helpers import DRIVERS, busybox_rootfs

from pydock.core.containers.lifecycle import Containers
from pydock.core.driver import Mount
from pydock.core.images.store import ImageStore, image_config
from pydock.core.runtime.mounted import in_container_root
from pydock.testing.cli import Pydock
from pydock.testing.layers import import_layers
from pydock.testing.manifest import manifest
from pydock.testing.tar import Member, dir_, link, node, opaque, reg, sym, tree, whiteout

MTIME = 1_700_000_000  # whole seconds: layer tars carry no finer times


def xattrs(**values: str) -> dict[str, str]:
    """PAX headers carrying user.* xattrs."""
    return {f"SCHILY.xattr.user.{name}": value for name, value in values.items()}


def base_layer(tmp: Path) -> list[Member]:
    return [
        *tree(busybox_rootfs(tmp / "rootfs")),
        reg("etc/keep", b"v1\n"), reg("etc/gone", b"deleted in layer 2\n"),
        dir_("olddir"), reg("olddir/a", b"a\n"),
        dir_("olddir/sub", 0o700, uid=1000, gid=1000), reg("olddir/sub/deep", b"deep\n"),
        dir_("replaced"), reg("replaced/x", b"x\n"),
        reg("setuid", b"#!/bin/sh\n", 0o4755), dir_("shared", 0o1777),
        sym("link-to-etc", "/etc"),
        reg("hard1", b"same inode\n"), link("hard2", "hard1"),
        reg("tagged", b"xattr\n", pax_headers=xattrs(color="blue")),
        node("fifo", tarfile.FIFOTYPE, 0o644),
        node("null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
    ]


SECOND_LAYER = [
    dir_("etc"), reg("etc/keep", b"v2\n"), whiteout("etc/gone"), whiteout("olddir"),
    reg("setuid", b"#!/bin/sh\n", 0o2750, uid=5, gid=6),
    reg("tagged", b"xattr\n", pax_headers=xattrs(color="red", more="1")),
]
THIRD_LAYER = [
    dir_("replaced", 0o750), opaque("replaced"), reg("replaced/y", b"only y\n"),
    dir_("link-to-etc"), reg("link-to-etc/now-a-dir", b"dir over symlink\n"),
    reg("olddir", b"a file where a directory was\n"), whiteout("hard2"),
]
FOURTH_LAYER = [
    dir_("olddir", 0o711), reg("olddir/reborn", b"directory again\n"),
    reg("hard1", b"rewritten\n", 0o600), link("hard3", "hard1"),
]


# Where pydock mounts a container's own /etc files: the empty mount points it makes where the
# image has none are no part of the image (test_etc_files.py).
MOUNT_POINTS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def view(rootfs: Path, mounts: list[Mount]) -> str:
    """The manifest of a root as the given mounts make it, taken in a private mount namespace,
    less pydock's /etc mount points."""
    return str(in_container_root(str(rootfs), mounts, lambda root: repr(sorted(
        (path, entry) for path, entry in manifest(Path(root)).items()
        if path not in MOUNT_POINTS))))


def test_every_driver_matches_the_kernels_overlay_after_every_layer(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    containers = Containers(pydock.root)
    layers = [base_layer(tmp_path), SECOND_LAYER, THIRD_LAYER, FOURTH_LAYER]
    diff_ids = import_layers(containers.images, layers)
    empty, mountpoint = tmp_path / "empty", tmp_path / "mnt"
    empty.mkdir()
    mountpoint.mkdir()
    for depth in range(1, len(layers) + 1):
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

    extra = import_layers(store, [[reg(f"layers/f{i:03d}", f"layer {i}\n".encode())]
                                  for i in range(500)])
    store.add_image(image_config(base + extra[:499], int(time.time()), "deep"), "deep:500")
    store.add_image(image_config(base + extra, int(time.time()), "deep"), "deep:501")
    out = pydock.ok("run", "--rm", "--image", "deep:500", "sh", "-c",
                    "ls /layers | wc -l; cat /layers/f000 /layers/f498")
    assert out.split("\n") == ["499", "layer 0", "layer 498", ""]
    pydock.refused("run", "--rm", "--image", "deep:501", "true",
                   match="501 layers; overlay stacks at most 500")
    assert pydock.container_names() == []


@pytest.mark.parametrize("driver", ["copy", "bind"])
def test_flattening_drivers_take_long_chains_too(pydock: Pydock, driver: str) -> None:
    store = ImageStore(pydock.root)
    base = store.resolve("pydock/default").diff_ids
    extra = import_layers(store, [[reg(f"f{i}", b"x", 0o600 + i)] for i in range(40)])
    store.add_image(image_config(base + extra, int(time.time()), "long"), "long")
    out = pydock.ok("run", "--rm", "--storage", driver, "--image", "long", "stat", "-c", "%a",
                    "/f0", "/f39")
    assert out.split() == ["600", "647"]
