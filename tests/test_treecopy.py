"""copy_tree on real files: every file type, mode bit, owner, link and xattr a layer can hold."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pydock.core.layers.treecopy import copy_tree
from pydock.testing.manifest import diff_manifests, manifest

pytestmark = pytest.mark.quick

ATIME_NS = 1_000_000_000_123_456_789
MTIME_NS = 1_100_000_000_987_654_321
# A version-2 file capability granting cap_net_raw (bit 13), effective.
CAPABILITY = struct.pack("<5I", 0x02000000 | 1, 1 << 13, 0, 0, 0)
# A default POSIX ACL (user::rwx, user:1234:rwx, group::r-x, mask::rwx, other::r-x) in the
# kernel's xattr format: version 2, then (tag, perm, id) entries sorted by tag.
_NO_ID = 0xFFFFFFFF
DEFAULT_ACL = struct.pack("<I", 2) + b"".join(
    struct.pack("<HHI", tag, perm, ident)
    for tag, perm, ident in [(0x01, 7, _NO_ID), (0x02, 7, 1234), (0x04, 5, _NO_ID),
                             (0x10, 7, _NO_ID), (0x20, 5, _NO_ID)])

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mknod, chown, trusted.*)")


def make_tree(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A tree with one of everything; all times set to a fixed past value."""
    root.mkdir()
    (root / "file").write_bytes(b"hello\n")
    os.setxattr(root / "file", "user.comment", b"a file")
    (root / "empty").touch()
    (root / "big").write_bytes(os.urandom(5 << 20))
    (root / "big-linked").write_bytes(os.urandom(5 << 20))
    os.link(root / "big-linked", root / "sub-big-link")
    (root / "noperm").write_bytes(b"secret\n")
    (root / "noperm").chmod(0o000)
    # Modes the umask would take bits from: a copier must not rely on the create mode.
    (root / "writable").write_bytes(b"anyone\n")
    (root / "writable").chmod(0o666)

    (root / "setuid").write_bytes(b"#!/bin/sh\n")
    (root / "setuid").chmod(0o4755)
    # chown clears setuid/setgid and file capabilities: a copier that chowns last loses them.
    (root / "setuid-owned").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "setuid-owned", 1234, 5678)
    os.setxattr(root / "setuid-owned", "security.capability", CAPABILITY)
    (root / "setuid-owned").chmod(0o6755)
    (root / "owned").write_bytes(b"owned\n")
    os.chown(root / "owned", 1234, 5678)

    (root / "shared").mkdir()
    os.chown(root / "shared", 0, 5678)
    (root / "shared").chmod(0o2775)
    (root / "shared" / "inherits").write_bytes(b"group 5678\n")
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)
    (root / "readonly").mkdir()
    (root / "readonly" / "inside").write_bytes(b"in a 0500 dir\n")
    (root / "readonly").chmod(0o500)
    (root / "owned-dir").mkdir()
    (root / "owned-dir" / "child").write_bytes(b"x")
    os.chown(root / "owned-dir", 1234, 5678)
    (root / "owned-dir").chmod(0o750)

    (root / "sub").mkdir()
    (root / "hl1").write_bytes(b"linked\n")
    os.link(root / "hl1", root / "hl2")
    os.link(root / "hl1", root / "sub" / "hl3")

    os.symlink("file", root / "link-owned")
    os.chown(root / "link-owned", 1234, 5678, follow_symlinks=False)
    os.setxattr(root / "link-owned", "trusted.note", b"on a symlink", follow_symlinks=False)
    os.symlink("/etc/passwd", root / "passwd")
    os.symlink("../..", root / "up")
    os.symlink("nowhere/at/all", root / "dangling")

    os.mknod(root / "null", stat.S_IFCHR, os.makedev(1, 3))
    (root / "null").chmod(0o666)
    os.mknod(root / "loop0", stat.S_IFBLK | 0o660, os.makedev(7, 0))
    os.mknod(root / "whiteout", stat.S_IFCHR, os.makedev(0, 0))
    os.mkfifo(root / "fifo", 0o640)
    # A socket's path must fit in 108 bytes; binding relative to the directory keeps it short.
    monkeypatch.chdir(root)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind("socket")
    (root / "socket").chmod(0o777)

    (root / "xdir").mkdir()
    os.setxattr(root / "xdir", "user.dir", b"on a dir")
    (root / "opaque").mkdir()
    (root / "opaque" / "kept").write_bytes(b"upper\n")
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")

    set_times(root)


def set_times(root: Path) -> None:
    for dirpath, dirnames, filenames in os.walk(root, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), ns=(ATIME_NS, MTIME_NS), follow_symlinks=False)
    os.utime(root, ns=(ATIME_NS, MTIME_NS))


def lstat_all(root: Path) -> dict[str, os.stat_result]:
    """lstat of every path under root, listing directories with O_NOATIME: looking at a tree
    must not change the atimes the test compares."""
    stats = {}
    pending = [""]
    while pending:
        rel = pending.pop()
        stats[rel or "/"] = st = os.lstat(f"{root}{rel}")
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(f"{root}{rel}", os.O_RDONLY | os.O_DIRECTORY | os.O_NOATIME)
            try:
                pending.extend(f"{rel}/{name}" for name in os.listdir(fd))
            finally:
                os.close(fd)
    return stats


def test_copy_preserves_every_type_mode_owner_link_and_xattr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, monkeypatch)
    before = manifest(src)
    assert {entry.type for entry in before.values()} == {
        "file", "dir", "symlink", "chr", "blk", "fifo", "socket"}

    copy_tree(src, dst)

    copied = manifest(dst)
    assert copied == before, "\n".join(diff_manifests(before, copied))
    assert manifest(src) == before
    assert before["/hl2"].hardlink == before["/sub/hl3"].hardlink == "/hl1"
    assert before["/opaque"].xattrs == {"trusted.overlay.opaque": b"y"}
    assert os.getxattr(dst / "setuid-owned", "security.capability") == CAPABILITY
    # The big files went through worker threads, and none may outlive the copy: the runtime
    # unshares namespaces later, which the kernel refuses to a multithreaded process.
    assert threading.active_count() == 1


def test_times_of_every_entry_are_copied_and_the_source_is_not_touched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_tree(src, monkeypatch)
    before = lstat_all(src)

    copy_tree(src, dst)

    copied = lstat_all(dst)
    assert copied.keys() == before.keys()
    for path, st in before.items():
        assert (copied[path].st_atime_ns, copied[path].st_mtime_ns) == (
            st.st_atime_ns, st.st_mtime_ns), path
    # Reading with O_NOATIME leaves the source's atimes alone, except a symlink's: readlink
    # always updates it, as it does for cp -a.
    after = lstat_all(src)
    for path, st in before.items():
        if not stat.S_ISLNK(st.st_mode):
            assert after[path].st_atime_ns == st.st_atime_ns, path


def test_dst_must_not_exist(tmp_path: Path) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "file").write_bytes(b"x")
    dst.mkdir()

    with pytest.raises(FileExistsError, match=f"copy {dst}"):
        copy_tree(src, dst)
    assert list(dst.iterdir()) == []


def test_nothing_is_inherited_from_the_parent_of_dst(tmp_path: Path) -> None:
    """A setgid bit, group or default ACL on dst's parent must not leak into the copy."""
    parent = tmp_path / "parent"
    parent.mkdir()
    os.chown(parent, 0, 5678)
    parent.chmod(0o2775)
    os.setxattr(parent, "system.posix_acl_default", DEFAULT_ACL)
    src, dst = tmp_path / "src", parent / "dst"
    (src / "dir").mkdir(parents=True)
    (src / "dir" / "file").write_bytes(b"x")
    (src / "file").write_bytes(b"y")
    os.mkfifo(src / "fifo")

    copy_tree(src, dst)

    copied = manifest(dst)
    assert copied == manifest(src), "\n".join(diff_manifests(manifest(src), copied))
    for path in copied:
        assert os.listxattr(f"{dst}{path}", follow_symlinks=False) == [], path


def test_symlinks_out_of_the_tree_are_copied_as_symlinks_and_never_followed(
        tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    (outside / "secret").write_bytes(b"host data\n")
    (outside / "deeper" / "more").write_bytes(b"more host data\n")
    set_times(outside)
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    targets = {"absolute": str(outside), "relative": "../outside", "root": "/",
               "file": str(outside / "secret")}
    for name, target in targets.items():
        os.symlink(target, src / name)

    copy_tree(src, dst)

    assert {p.name: os.readlink(p) for p in dst.iterdir()} == targets
    assert all(p.is_symlink() for p in dst.iterdir())
    assert sorted(name for _, dirs, files in os.walk(dst) for name in dirs + files) == sorted(
        targets)
    # Nothing outside was even listed or read: under relatime, any access would move these
    # atimes, which are far older than a day.
    for path in (outside, outside / "secret", outside / "deeper", outside / "deeper" / "more"):
        assert os.lstat(path).st_atime_ns == ATIME_NS, path


@pytest.mark.parametrize("broken", ["copy_file_range", "copy_file_range+sendfile", "zero"])
def test_data_is_copied_whichever_kernel_copy_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broken: str) -> None:
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    (src / "big").write_bytes(os.urandom((5 << 20) + 17))
    (src / "small").write_bytes(b"small\n")

    def cross_device(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def invalid(*args: object) -> int:
        raise OSError(errno.EINVAL, "Invalid argument")

    def copies_nothing(*args: object) -> int:
        return 0

    if broken == "zero":
        monkeypatch.setattr(os, "copy_file_range", copies_nothing)
    else:
        monkeypatch.setattr(os, "copy_file_range", cross_device)
    if "sendfile" in broken:
        monkeypatch.setattr(os, "sendfile", invalid)

    copy_tree(src, dst)

    assert manifest(dst) == manifest(src)


@pytest.mark.parametrize("size", [1 << 40, 5 << 20])  # a large file goes to the pool
def test_holes_stay_holes(tmp_path: Path, size: int) -> None:
    """A sparse file costs its data, not its size, in the copy too: where the filesystem
    cannot reflink (the test's, ext4), kernel copies write holes out as zeros, and a 1 TiB
    sparse file would fill the disk."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    src.mkdir()
    with open(src / "sparse", "wb") as f:
        f.truncate(size)
        for offset in (4096, size // 2, size - 3):
            f.seek(offset)
            f.write(b"data")
    copy_tree(src, dst)
    st = (dst / "sparse").stat()
    assert st.st_size == size + 1 and st.st_blocks * 512 <= 1 << 20
    with open(dst / "sparse", "rb") as f:
        for offset in (0, 4096, size // 2, size - 3):
            f.seek(offset)
            assert f.read(4) == (b"\0\0\0\0" if offset == 0 else b"data")


@pytest.mark.parametrize("where", ["fifo", "big"])
def test_errors_name_the_path_that_failed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """On the main thread (a fifo) as on a worker (the data of a big file)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    (src / "sub").mkdir(parents=True)
    os.mkfifo(src / "sub" / "fifo")
    (src / "sub" / "big").write_bytes(os.urandom(3 << 20))

    def refuse(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "mknod" if where == "fifo" else "copy_file_range", refuse)
    with pytest.raises(OSError, match=f"copy {src}/sub/{where}: Input/output error") as caught:
        copy_tree(src, dst)
    assert caught.value.errno == errno.EIO
    assert threading.active_count() == 1


@pytest.fixture
def btrfs(tmp_path: Path) -> Iterator[Path]:
    """A fresh btrfs mounted from a loop image: a filesystem that can reflink."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.skip("mkfs.btrfs not installed (Debian package btrfs-progs)")
    image, mountpoint = tmp_path / "btrfs.img", tmp_path / "mnt"
    with open(image, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["mkfs.btrfs", "-q", str(image)], check=True, capture_output=True)
    mountpoint.mkdir()
    mounted = subprocess.run(["mount", "-o", "loop", str(image), str(mountpoint)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot loop-mount a btrfs image: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_file_data_is_reflinked_where_the_filesystem_can(
        btrfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = btrfs / "src", btrfs / "dst"
    src.mkdir()
    (src / "big").write_bytes(os.urandom(3 << 20))
    (src / "small").write_bytes(os.urandom(5000))

    def copies_bytes(*args: object) -> int:
        raise AssertionError("file data was copied, not reflinked")

    monkeypatch.setattr(os, "copy_file_range", copies_bytes)
    monkeypatch.setattr(os, "sendfile", copies_bytes)

    copy_tree(src, dst)

    assert manifest(dst) == manifest(src)
