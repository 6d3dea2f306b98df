"""The conformance case ``host_mounts``: a driver's mounts performed on the host, as containerd
performs the mounts a snapshotter returns (``pydock snapshotter serve``, docs/containerd.md).

pydock's core mounts a container's root in the container's own mount namespace, and past one
page of options it uses fsconfig(2). containerd does neither: its Go ``mount`` package mounts
in containerd's namespace, the host's, with plain mount(2), every mount on the same target in
turn. For each one, the generic options (``ro``, ``rw``, ``bind``, ``rbind``, ``nosuid``,
``nodev``, ``noexec`` and a few more) become flags and the rest is joined as data, which must
fit in one page; a bind with ``ro`` is remounted read-only, because mount(2) ignores
MS_RDONLY when it makes a bind. :func:`mount_as_containerd` does that, and nothing more, with
pydock's ctypes wrappers. The mounts are first changed by the service's own
:func:`pydock.core.snapshotter.mounts.as_served` (a ``bind`` option added to a mount of type
"bind" that has none; ``rw`` dropped and ``ro`` added for a read-only view), so the case
checks what containerd gets.

On a container of a small chain, the case mounts its root on the host: the tree must be the
image's, a write must succeed and then be seen by the container; with ``ro`` added, every
write must fail with EROFS. After each, unmounting the target (plain umount(2), until the
kernel says it is no mount point) must leave no mount and nothing in the mount point.

Not reproduced: containerd's shortening of an overlay lowerdir list past 3,584 bytes (it
changes into the layers' common directory); the case's chain is far too short to need it.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from pydock.core.driver import Mount
from pydock.core.snapshotter.mounts import as_served
from pydock.core.syscalls import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
    mount,
    umount2,
)
from pydock.testing.cli import mounts_under
from pydock.testing.manifest import manifest
from pydock.testing.suite.helpers import CreateDir, CreateFile, Harness, Remove

# Flags of mount(2) that pydock.core.syscalls has no use for (linux/mount.h).
MS_SYNCHRONOUS = 0x10
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_RELATIME = 1 << 21

# containerd 1.6's parseMountOptions (mount/mount_linux.go): option -> (clears it, flag). Any
# other option is data for the filesystem, and so is "defaults", whose flag is 0.
_CONTAINERD_FLAGS = {
    "async": (True, MS_SYNCHRONOUS), "atime": (True, MS_NOATIME), "bind": (False, MS_BIND),
    "dev": (True, MS_NODEV), "diratime": (True, MS_NODIRATIME), "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC), "mand": (False, MS_MANDLOCK), "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV), "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC), "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME), "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID), "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME), "remount": (False, MS_REMOUNT), "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY), "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID), "sync": (False, MS_SYNCHRONOUS),
}
# Go's os.Getpagesize(): the most mount(2) copies of its data.
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class ContainerdCannot(Exception):
    """Mounts containerd could not perform; the message says why."""


class _Parsed(NamedTuple):
    flags: int
    data: str


def _parse(options: Sequence[str]) -> _Parsed:
    flags, data = 0, []
    for option in options:
        if option == "loop":
            raise ContainerdCannot("option 'loop': containerd would set up a loop device, "
                                   "which this case does not")
        clears, flag = _CONTAINERD_FLAGS.get(option, (False, 0))
        if not flag:
            data.append(option)
        elif clears:
            flags &= ~flag
        else:
            flags |= flag
    return _Parsed(flags, ",".join(data))


def mount_as_containerd(mounts: Sequence[Mount], target: Path) -> None:
    """Mount each of ``mounts`` on ``target`` in this mount namespace, as containerd's
    ``mount.All`` does. Raises :class:`ContainerdCannot` or OSError (the mounts made so far
    stay: :func:`unmount_all` removes them)."""
    if not mounts:
        raise ContainerdCannot("the driver returns no mounts: containerd would mount nothing")
    for m in mounts:
        if m.target != "/":
            raise ContainerdCannot(f"a mount on {m.target}: containerd mounts every mount a "
                                   "snapshotter returns on the root itself")
        if m.type.startswith(("fuse.", "fuse3.")):
            raise ContainerdCannot(f"type {m.type}: containerd would run a mount helper")
        flags, data = _parse(m.options)
        if len(data) > _PAGE_SIZE:
            raise ContainerdCannot(f"{m.type} mount options of {len(data)} bytes: containerd "
                                   f"passes one page ({_PAGE_SIZE}) to mount(2)")
        if not flags & MS_REMOUNT or data:
            mount(m.source, os.fspath(target), m.type, flags, data)
        if flags & (MS_BIND | MS_RDONLY) == MS_BIND | MS_RDONLY:
            mount("", os.fspath(target), "", flags | MS_REMOUNT, "")


def unmount_all(target: Path) -> list[str]:
    """Unmount ``target`` until it is no mount point, as containerd's ``UnmountAll``; a mount
    that is busy is detached instead, and its error returned."""
    errors: list[str] = []
    while True:
        try:
            umount2(os.fspath(target), 0)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not a mount point: all gone
                return errors
            if exc.errno != errno.EBUSY:
                raise
            errors.append(str(exc))
            umount2(os.fspath(target), MNT_DETACH)


@contextlib.contextmanager
def _mounted(h: Harness, mounts: Sequence[Mount], target: Path, what: str) -> Iterator[None]:
    try:
        try:
            mount_as_containerd(mounts, target)
        except (ContainerdCannot, OSError) as exc:
            h.fail(f"{what}: {exc} (mounts: {list(mounts)})")
        yield
    finally:
        busy = unmount_all(target)
    if busy:
        h.fail(f"{what}: unmounting failed, detached instead: {busy}")
    if mounts_under(target):
        h.fail(f"{what}: mounts left on {target}: {mounts_under(target)}")
    if os.listdir(target):
        h.fail(f"{what}: the mount point itself holds {sorted(os.listdir(target))} after "
               "unmounting: a write missed the mounts")


def host_mounts(h: Harness) -> None:
    chain = h.check_layers(
        [CreateDir("/etc"), CreateFile("/etc/motd", b"lower\n"), CreateFile("/gone", b"x\n")],
        [CreateFile("/etc/motd", b"upper\n", 0o600), Remove("/gone"), CreateDir("/var")])
    container_id = h.prepare(chain.ids)
    mounts = h.driver.mounts(container_id, h.layer_paths(chain.ids))
    target = h.work / "host-mount"
    target.mkdir()
    expected = manifest(chain.flat)

    with _mounted(h, as_served(mounts), target, "the container's root mounted on the host"):
        h.check_equal(manifest(target), expected,
                      "the container's root mounted on the host as containerd mounts it")
        try:
            CreateFile("/var/from-host", b"written on the host\n").apply(target, 0)
        except OSError as exc:
            h.fail(f"a write to the container's root mounted on the host failed: {exc}")
        written = manifest(target)
    h.check_equal(h.view(container_id, chain.ids), written,
                  "the container's root after a write through its mounts on the host")

    with _mounted(h, as_served(mounts, read_only=True), target, "with 'ro' added"):
        refused = []
        for applier in (CreateFile("/new", b"no\n"), CreateFile("/etc/motd", b"no\n"),
                        Remove("/var/from-host")):
            try:
                applier.apply(target, 0)
                refused.append("succeeded")
            except OSError as exc:
                refused.append(errno.errorcode.get(exc.errno or 0, str(exc)))
        if refused != ["EROFS"] * 3:
            h.fail(f"writes with 'ro' added to the host mounts (a new file, a rewrite, a "
                   f"removal) gave {refused}; each must fail with EROFS")
        h.check_equal(manifest(target), written, "the read-only host mount after refused writes")
    h.remove(container_id)
