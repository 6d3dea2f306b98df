"""Device nodes: an image's or a container's own never open; docker's defaults and
``--device`` do (pydock.core.runtime.devices).

The attack: an image ships ``b 7 N`` with mode 0666, the host's loop device standing in
for a disk (``b 8 0``). A host loop device backed by a private file with known content
plays the disk here, so that a test can tell whether the container read the "disk".
"""

from __future__ import annotations

import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import storage_entries
from probes import import_probe_image

from pydock.core.errors import PydockError
from pydock.core.runtime import devices
from pydock.core.runtime.cgroups import has_v1_controller
from pydock.testing.cli import Pydock
from pydock.testing.tar import node

SECRET = b"host-disk-secret:" + b"x" * 4079  # one 4 KiB block the "disk" holds
HARDENED = ("--cap-drop", "ALL", "-u", "65534", "--read-only",
            "--security-opt", "no-new-privileges")
V1_DEVICES = pytest.mark.skipif(not has_v1_controller("devices"),
                                reason="this host has no cgroup v1 devices controller")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    """A host loop device over a private file of :data:`SECRET`; detached afterwards."""
    backing = tmp_path / "disk.img"
    backing.write_bytes(SECRET)
    loop = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                          capture_output=True, text=True).stdout.strip()
    try:
        yield Path(loop)
    finally:
        subprocess.run(["losetup", "-d", loop], check=True)


@pytest.fixture
def image(pydock: Pydock, tmp_path: Path, disk: Path) -> str:
    """A busybox image with the probe and the disk's node at /disk, mode 0666."""
    rdev = disk.stat().st_rdev
    return import_probe_image(pydock, tmp_path, ["devnode"], extra=[
        node("./disk", tarfile.BLKTYPE, 0o666, devmajor=os.major(rdev),
             devminor=os.minor(rdev))])


def numbers(disk: Path) -> tuple[str, str]:
    rdev = disk.stat().st_rdev
    return str(os.major(rdev)), str(os.minor(rdev))


@pytest.mark.parametrize("flags", [(), HARDENED], ids=["default", "hardened"])
def test_an_images_device_node_never_opens(pydock: Pydock, image: str, disk: Path,
                                           flags: tuple[str, ...]) -> None:
    # The node stays in the image, as it was shipped ...
    assert pydock.ok("run", "--rm", "--image", image, "ls", "-l", "/disk").startswith("b")
    # ... and opens neither for reading nor for writing.
    read = pydock("run", "--rm", "--image", image, *flags, "/probes/devnode", "read", "/disk")
    assert read.returncode == 1 and "open:" in read.stderr
    assert SECRET[:16] not in read.stdout.encode()
    written = pydock("run", "--rm", "--image", image, *flags,
                     "/probes/devnode", "write", "/disk", "overwritten")
    assert written.returncode == 1 and "open:" in written.stderr
    with open(disk, "rb") as f:
        assert f.read(len(SECRET)) == SECRET


def test_a_host_user_cannot_open_an_images_node_through_proc_root(
        pydock: Pydock, image: str, disk: Path) -> None:
    # The container runs as nobody (group nogroup: the image has no /etc/passwd to name
    # it), so nobody on the host may enter /proc/PID/root; the host's own /dev/loopN
    # refuses nobody, the image's world-writable node must as well.
    pydock.ok("run", "-d", "--name", "holder", "--image", image, *HARDENED,
              "-u", "65534:65534", "/probes/devnode", "pause")
    pid = pydock.inspect("holder")["State"]["Pid"]
    try:
        via_proc = f"/proc/{pid}/root/disk"
        assert stat.S_ISBLK(os.stat(via_proc).st_mode)
        as_nobody = subprocess.run(["head", "-c", "16", via_proc], user=65534, group=65534,
                                   extra_groups=[], capture_output=True)
        assert as_nobody.returncode != 0
        assert SECRET[:16] not in as_nobody.stdout
        # Not even the host's root: the container's root is nodev for everyone.
        with pytest.raises(PermissionError):
            open(via_proc, "rb").close()
    finally:
        pydock.ok("rm", "-f", "holder")


@pytest.mark.parametrize("where", ["/tmp", "/dev", "/vol"])
def test_a_node_the_container_makes_never_opens(pydock: Pydock, image: str, disk: Path,
                                                tmp_path: Path, where: str) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    major, minor = numbers(disk)
    result = pydock("run", "--rm", "--image", image, "-v", f"{volume}:/vol", "sh", "-c",
                    f"/probes/devnode mknod {where}/made b {major} {minor} && "
                    f"/probes/devnode read {where}/made")
    # mknod is allowed (docker's default CAP_MKNOD and "b *:* m"); the open is not.
    assert result.returncode == 1 and "open:" in result.stderr, result.stderr
    assert SECRET[:16] not in result.stdout.encode()


@V1_DEVICES
def test_the_devices_cgroup_refuses_a_node_on_a_mount_the_container_makes(
        pydock: Pydock, image: str, disk: Path) -> None:
    # With CAP_SYS_ADMIN the container mounts a tmpfs without nodev: only the devices
    # controller's allowlist is left to refuse the node made there.
    major, minor = numbers(disk)
    result = pydock("run", "--rm", "--image", image, "--cap-add", "SYS_ADMIN", "sh", "-c",
                    "mkdir /scratch && /probes/devnode tmpfs /scratch && "
                    f"/probes/devnode mknod /scratch/made b {major} {minor} && "
                    "/probes/devnode read /scratch/made")
    assert result.returncode == 1 and "open: Operation not permitted" in result.stderr, (
        result.stderr)
    assert SECRET[:16] not in result.stdout.encode()


def test_the_default_devices_work_and_their_host_nodes_cannot_be_changed(
        pydock: Pydock, image: str) -> None:
    out = pydock.ok("run", "--rm", "--image", image, "sh", "-c",
                    "echo gone > /dev/null && /probes/devnode read /dev/zero | wc -c && "
                    "/probes/devnode read /dev/urandom | wc -c && "
                    "/probes/devnode write /dev/full x; "
                    "chmod 0600 /dev/null || echo chmod refused")
    assert out.split("\n")[:2] == ["64", "64"]
    assert "chmod refused" in out
    assert stat.S_IMODE(os.stat("/dev/null").st_mode) == 0o666


def test_device_passes_a_host_device(pydock: Pydock, image: str, disk: Path) -> None:
    out = pydock.ok("run", "--rm", "--image", image, "--device", f"{disk}:/dev/xvda",
                    "/probes/devnode", "read", "/dev/xvda")
    assert out.encode() == SECRET[:64]
    assert pydock.ok("run", "--rm", "--image", image, "--device", str(disk),
                     "/probes/devnode", "read", str(disk)).encode() == SECRET[:64]
    pydock.ok("run", "--name", "given", "--image", image, "--device", f"{disk}:/dev/xvda:rw",
              "true")
    assert pydock.inspect("given")["HostConfig"]["Devices"] == [
        {"PathOnHost": str(disk), "PathInContainer": "/dev/xvda", "CgroupPermissions": "rw"}]


@V1_DEVICES
def test_device_permissions_hold_on_cgroup_v1(pydock: Pydock, image: str, disk: Path) -> None:
    read_only = ("run", "--rm", "--image", image, "--device", f"{disk}:/dev/xvda:r")
    assert pydock.ok(*read_only, "/probes/devnode", "read", "/dev/xvda").encode() == (
        SECRET[:64])
    written = pydock(*read_only, "/probes/devnode", "write", "/dev/xvda", "overwritten")
    assert written.returncode == 1 and "open: Operation not permitted" in written.stderr
    with open(disk, "rb") as f:
        assert f.read(len(SECRET)) == SECRET


@pytest.mark.parametrize(("device", "match"), [
    ("/nonexistent", "/nonexistent: No such file or directory"),
    ("/etc/passwd", "/etc/passwd is not a device node"),
    ("/dev/null:relative", "relative is not an absolute path"),
    ("/dev/null:/dev/x:rwx", "invalid device mode 'rwx'"),
    ("/dev/null:/dev/x:rr", "invalid device mode 'rr'"),
    ("/dev/null:/a:rw:x", "invalid device specification"),
    (":/dev/x", "invalid device specification"),
    ("/dev/null:/proc/x", "/proc/x is under /proc"),
])
def test_bad_devices_are_one_line_125(pydock: Pydock, device: str, match: str) -> None:
    pydock.refused("run", "--name", "never", "--device", device, "true", match=match)
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []


def test_a_node_made_in_a_container_survives_commit_and_save_but_never_opens(
        pydock: Pydock, image: str, disk: Path, tmp_path: Path) -> None:
    major, minor = numbers(disk)
    pydock.ok("run", "--name", "maker", "--image", image,
              "/probes/devnode", "mknod", "/made", "b", major, minor)
    pydock.ok("commit", "maker", "with-nodes")
    archive = tmp_path / "with-nodes.tar"
    pydock.ok("image", "save", "with-nodes", "-o", str(archive))
    fresh = Pydock(tmp_path / "fresh")
    fresh.ok("image", "load", "-i", str(archive))
    for path in ("/disk", "/made"):
        listing = fresh.ok("run", "--rm", "--image", "with-nodes", "ls", "-l", path)
        assert listing.startswith("b") and f"{major}, {minor:>3}" in listing, listing
        read = fresh("run", "--rm", "--image", "with-nodes", "/probes/devnode", "read", path)
        assert read.returncode == 1 and "open:" in read.stderr


@pytest.mark.quick
def test_permissions_nothing_would_enforce_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host without cgroup v1's devices controller (pure cgroup v2): nodev mounts cannot
    # narrow what a bind mounted node allows, so PERMS without r or w would be a lie.
    monkeypatch.setattr(devices, "_has_devices_controller", lambda: False)
    with pytest.raises(PydockError, match="no cgroup v1 devices controller"):
        devices.parse_device("/dev/null:/dev/x:r")
    entry, rule = devices.parse_device("/dev/null:/dev/x:rw")
    assert (entry["path"], entry["hostPath"], rule["access"]) == ("/dev/x", "/dev/null", "rw")
