"""The btrfs driver as users meet it: installed, found by pydock through its entry point, and
driven through the ``pydock`` CLI with the storage root on a loopback btrfs filesystem."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pydock.core.containers.lifecycle import Containers
from pydock.core.driver import Availability, Mount
from pydock.core.images.store import ImageStore, image_config
from pydock.core.runtime.mounted import in_container_root
from pydock.testing.cli import Pydock
from pydock.testing.layers import import_layers
from pydock.testing.manifest import manifest
from pydock.testing.tar import Member, dir_, link, opaque, reg, whiteout

if TYPE_CHECKING:
    from pydock_btrfs.driver import BtrfsDriver

MTIME = 1_700_000_000


def driver_class() -> type[BtrfsDriver]:
    """The driver class, imported only once the ``installed`` fixture has had its say."""
    from pydock_btrfs.driver import BtrfsDriver

    return BtrfsDriver


def subvolumes(mount_point: Path) -> dict[str, tuple[str, str]]:
    """Every subvolume of the filesystem: its path -> (its uuid, the uuid it is a snapshot of)."""
    out = subprocess.run(["btrfs", "subvolume", "list", "-u", "-q", str(mount_point)],
                         check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        # "ID 257 gen 9 top level 5 parent_uuid P uuid U path PATH" (PATH may hold spaces).
        words = line.split(maxsplit=12)
        found[words[12]] = (words[10], words[8])
    return found


def add_image(root: Path, name: str, layers: list[list[Member]]) -> None:
    """Image ``name``: pydock's default image with one more layer per member list on top."""
    store = ImageStore(root)
    diff_ids = [*store.resolve("pydock/default").diff_ids, *import_layers(store, layers)]
    store.add_image(image_config(diff_ids, MTIME, "pydock-btrfs tests"), name)


def used_bytes(mount_point: Path) -> int:
    os.sync()
    st = os.statvfs(mount_point)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def test_available_only_on_btrfs_with_a_reason_to_act_on(btrfs: Path, ext4: Path) -> None:
    cls = driver_class()
    assert cls.available(ext4 / "pydock" / "storage" / "btrfs") == Availability(
        False, f"{ext4} is on ext4, not btrfs: put --root on a btrfs filesystem")
    assert cls.available(btrfs / "pydock" / "storage" / "btrfs") == Availability(True)


def test_storage_ls_shows_the_driver_and_its_distribution(pydock: Pydock, ext4: Path) -> None:
    listing = json.loads(pydock.ok("storage", "ls", "--format", "json"))
    row = {d["Name"]: d for d in listing["drivers"]}["btrfs"]
    assert (row["Origin"], row["Available"], row["Class"]) == (
        "pydock-btrfs", True, "pydock_btrfs.driver.BtrfsDriver")

    off_btrfs = Pydock(ext4 / "pydock")
    off_btrfs.root.mkdir()
    listing = json.loads(off_btrfs.ok("storage", "ls", "--format", "json"))
    row = {d["Name"]: d for d in listing["drivers"]}["btrfs"]
    reason = f"{off_btrfs.root} is on ext4, not btrfs: put --root on a btrfs filesystem"
    assert (row["Available"], row["Reason"]) == (False, reason)
    result = off_btrfs("run", "--storage", "btrfs", "true")
    # By then the run has made the root's own directories: the reason names the nearest.
    reason = reason.replace(str(off_btrfs.root), str(off_btrfs.root / "storage"), 1)
    assert (result.returncode, result.stderr) == (
        125, f"pydock: storage driver 'btrfs' is not available here: {reason}\n")


def test_containers_are_isolated_and_the_image_is_unchanged(pydock: Pydock) -> None:
    image = json.loads(pydock.ok("image", "inspect", "pydock/default"))
    layer = pydock.root / "layers" / image["RootFS"]["Layers"][0].removeprefix("sha256:") / "diff"
    before = manifest(layer)

    pydock.ok("run", "--storage", "btrfs", "--name", "one", "sh", "-c",
              "echo one > /etc/motd && rm /bin/cat && mkdir /data")
    seen = pydock.ok("run", "--storage", "btrfs", "--name", "two", "sh", "-c",
                     "ls /etc/motd /data; ls /bin/cat")
    assert seen == "/bin/cat\n"
    assert pydock.ok("diff", "one").splitlines() == ["C /bin", "D /bin/cat", "A /data",
                                                     "C /etc", "A /etc/motd"]
    assert pydock.ok("diff", "two") == ""
    assert manifest(layer) == before
    assert pydock.inspect("one")["GraphDriver"]["Name"] == "btrfs"


def test_a_container_is_a_snapshot_costing_no_data_blocks(pydock: Pydock, btrfs: Path) -> None:
    size = 48 << 20
    data = os.urandom(size)  # incompressible, should the filesystem compress
    add_image(pydock.root, "big", [[reg("big", data)]])
    pydock.ok("run", "--storage", "btrfs", "--image", "big", "--name", "first", "true")
    before = used_bytes(btrfs)
    pydock.ok("run", "--storage", "btrfs", "--image", "big", "--name", "second", "true")
    grown = used_bytes(btrfs) - before
    assert grown < 1 << 20, f"a second container took {grown} bytes"

    root = Path(pydock.inspect("second")["GraphDriver"]["Data"]["RootDir"])
    assert (root / "big").read_bytes() == data
    # The container's subvolume is a snapshot of the image's read-only base, not a copy.
    volumes = subvolumes(btrfs)
    [base] = [path for path in volumes if "/bases/" in path]
    snapshot = str(root.parent.relative_to(btrfs))
    assert volumes[snapshot][1] == volumes[base][0]


def test_rm_leaves_no_subvolume_behind(pydock: Pydock, btrfs: Path) -> None:
    pydock.ok("run", "--storage", "btrfs", "--name", "a", "true")
    pydock.ok("run", "--storage", "btrfs", "--name", "b", "true")
    # One base for the image, one snapshot per container.
    assert len(subvolumes(btrfs)) == 3
    pydock.ok("rm", "a")
    assert len(subvolumes(btrfs)) == 2
    # A container may create subvolumes in its root (that needs no capability); they must
    # not keep its own from being deleted.
    root = Path(pydock.inspect("b")["GraphDriver"]["Data"]["RootDir"])
    for nested in (root / "tmp" / "vol", root / "tmp" / "vol" / "inner"):
        subprocess.run(["btrfs", "subvolume", "create", str(nested)], check=True,
                       capture_output=True)
    pydock.ok("rm", "b")
    assert subvolumes(btrfs) == {}


def test_a_failed_prepare_is_undone_and_remove_is_idempotent(btrfs: Path) -> None:
    driver = driver_class()(btrfs / "home")
    layer = btrfs / "layer"
    layer.mkdir()
    (layer / "file").write_text("content\n")
    driver.prepare("c1", [layer])
    with pytest.raises(FileExistsError):
        driver.prepare("c1", [layer])
    # Fails in the middle of building a base, once its subvolume exists.
    with pytest.raises(FileNotFoundError):
        driver.prepare("c2", [btrfs / "missing-layer"])
    assert len(subvolumes(btrfs)) == 3
    for container_id in ("c2", "c1", "c1", "never-prepared"):
        driver.remove(container_id)
    assert subvolumes(btrfs) == {}
    assert sorted(os.listdir(driver.home)) == ["bases", "lock"]


def test_usage_counts_what_the_container_wrote_not_the_image(pydock: Pydock) -> None:
    pydock.ok("run", "--storage", "btrfs", "--name", "w", "sh", "-c",
              "head -c 4194304 /dev/urandom > /data && echo changed > /etc/passwd")
    containers = Containers(pydock.root)
    usage = containers.driver("btrfs").usage(containers.state.load("w").id)
    # /data, /etc/passwd (rewritten in place) and / (which has a new entry); and what pydock
    # made to mount the container's own /etc/hostname and /etc/resolv.conf on: two empty
    # files the image lacks, and /etc, which has them as new entries.
    assert usage.inodes == 6
    assert 4 << 20 <= usage.bytes < (4 << 20) + (64 << 10)


# -- a layered image: every driver must show what the kernel's overlay mount of it shows -----

UPPER_LAYER = [
    dir_("etc"), reg("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"),  # replaced
    whiteout("etc/group"),  # deleted
    dir_("opaque"), reg("opaque/old", b"hidden by the layer above\n"),
    reg("hardlink", b"one inode\n"), link("hardlink2", "hardlink"),
    dir_("replaced"), reg("replaced/file", b"gone with its directory\n"),
]
TOP_LAYER = [
    dir_("opaque"), opaque("opaque"), reg("opaque/new", b"only this\n"),
    dir_("bin"), whiteout("bin/ls"),
    reg("replaced", b"a file where a directory was\n"),
]


def test_a_layered_image_shows_the_overlay_tree(pydock: Pydock, tmp_path: Path) -> None:
    add_image(pydock.root, "layered", [UPPER_LAYER, TOP_LAYER])
    pydock.ok("run", "--storage", "btrfs", "--image", "layered", "--name", "l", "true")
    containers = Containers(pydock.root)
    record = containers.state.load("l")
    layers = containers.images.layer_paths(record.layers)
    driver = containers.driver("btrfs")

    def view(mount_point: Path, mounts: list[Mount]) -> str:
        # Less the empty files pydock made to mount the container's /etc/hostname and
        # /etc/resolv.conf on (the image has neither), which are no part of the image.
        return str(in_container_root(str(mount_point), mounts, lambda root: repr(sorted(
            (path, entry) for path, entry in manifest(Path(root)).items()
            if path not in ("/etc/hostname", "/etc/resolv.conf")))))

    oracle = tmp_path / "oracle"
    oracle.mkdir()
    lowerdir = ":".join(str(layer) for layer in reversed(layers))
    expected = view(oracle, [Mount("overlay", "overlay", ("ro", f"lowerdir={lowerdir}"))])
    assert view(driver.rootfs_dir(record.id), driver.mounts(record.id, layers)) == expected
    assert pydock.ok("run", "--rm", "--storage", "btrfs", "--image", "layered", "sh", "-c",
                     "cat /replaced /opaque/*; test -e /bin/ls || echo no ls") == (
        "a file where a directory was\nonly this\nno ls\n")
