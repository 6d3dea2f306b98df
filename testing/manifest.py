"""Describe a directory tree as plain data, so tests can compare two trees with ``==``.

A test that copies, stacks or snapshots a tree wants to say "these two trees are the same" and,
when they are not, to be told where and how they differ. :func:`manifest` walks a tree without
following symlinks and records, per path, everything a container root depends on;
:func:`diff_manifests` turns two manifests into one line per difference for assertion messages.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path

_TYPES = {
    stat.S_IFREG: "file",
    stat.S_IFDIR: "dir",
    stat.S_IFLNK: "symlink",
    stat.S_IFCHR: "chr",
    stat.S_IFBLK: "blk",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
}
# security.* is left out: the kernel or an LSM may label new files on its own (security.selinux),
# so it differs between trees that are the same as far as their owner is concerned.
_XATTR_PREFIXES = ("user.", "trusted.")


@dataclass(frozen=True)
class Entry:
    """One path of a tree. Fields that do not apply to the entry's type are None."""

    type: str  # "file", "dir", "symlink", "chr", "blk", "fifo" or "socket"
    mode: int  # permission bits, setuid/setgid/sticky included
    uid: int
    gid: int
    size: int | None = None  # regular files
    sha256: str | None = None  # regular files
    target: str | None = None  # symlinks, verbatim
    rdev: tuple[int, int] | None = None  # devices: (major, minor)
    # The first (sorted) of the paths in this tree that share this entry's inode; None for an
    # inode seen at one path only.
    hardlink: str | None = None
    xattrs: dict[str, bytes] = field(default_factory=dict)  # user.* and trusted.*
    mtime_ns: int | None = None  # regular files, unless the manifest was made with times=False


def manifest(root: Path, times: bool = True) -> dict[str, Entry]:
    """Map each path under ``root`` ('/' for root itself, '/a/b' below it) to its Entry.

    Symlinks are recorded, never followed; device nodes, fifos and sockets are never opened.
    With ``times=False`` no mtime is recorded, for comparing trees whose times may differ.
    """
    stats: dict[str, os.stat_result] = {}
    _walk(os.fspath(root), stats)
    paths_of_inode: dict[tuple[int, int], list[str]] = {}
    for rel, st in stats.items():
        if not stat.S_ISDIR(st.st_mode):
            paths_of_inode.setdefault((st.st_dev, st.st_ino), []).append(rel)
    result = {}
    for rel, st in stats.items():
        sharing = paths_of_inode.get((st.st_dev, st.st_ino), [])
        hardlink = min(sharing) if len(sharing) > 1 else None
        result[rel or "/"] = _entry(os.fspath(root) + rel, st, hardlink, times)
    return result


def diff_manifests(a: dict[str, Entry], b: dict[str, Entry]) -> list[str]:
    """Human-readable differences between two manifests, one line each, sorted by path."""
    lines = []
    for path in sorted(a.keys() | b.keys()):
        if path not in b:
            lines.append(f"{path}: only in the first tree ({a[path].type})")
        elif path not in a:
            lines.append(f"{path}: only in the second tree ({b[path].type})")
        else:
            for f in fields(Entry):
                left, right = getattr(a[path], f.name), getattr(b[path], f.name)
                if left != right:
                    if f.name == "mode":
                        left, right = oct(left), oct(right)
                    lines.append(f"{path}: {f.name} {left!r} != {right!r}")
    return lines


def _walk(top: str, stats: dict[str, os.stat_result]) -> None:
    pending = [""]
    while pending:
        rel = pending.pop()
        stats[rel] = st = os.lstat(top + rel)
        if stat.S_ISDIR(st.st_mode):
            with os.scandir(top + rel) as entries:
                pending.extend(f"{rel}/{entry.name}" for entry in entries)


def _entry(path: str, st: os.stat_result, hardlink: str | None, times: bool) -> Entry:
    kind = _TYPES[stat.S_IFMT(st.st_mode)]
    size = sha256 = target = rdev = mtime_ns = None
    if kind == "file":
        size = st.st_size
        sha256 = _sha256(path)
        mtime_ns = st.st_mtime_ns if times else None
    elif kind == "symlink":
        target = os.readlink(path)
    elif kind in ("chr", "blk"):
        rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    xattrs = {
        name: os.getxattr(path, name, follow_symlinks=False)
        for name in sorted(os.listxattr(path, follow_symlinks=False))
        if name.startswith(_XATTR_PREFIXES)
    }
    return Entry(type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                 size=size, sha256=sha256, target=target, rdev=rdev, hardlink=hardlink,
                 xattrs=xattrs, mtime_ns=mtime_ns)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1 << 20):
            digest.update(chunk)
    finally:
        os.close(fd)
    return digest.hexdigest()
