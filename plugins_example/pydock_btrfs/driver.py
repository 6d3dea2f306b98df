"""The btrfs driver: one read-only subvolume per image, one writable snapshot per container.

overlay copies a whole file up on its first write and the copy driver copies the whole image per
container; btrfs does neither. Its subvolumes are copy-on-write at the block level: a snapshot
shares every extent with its source and costs the same whatever the image's size, and a write
to a snapshot allocates new blocks for just the bytes written.

So, per image (layer chain), the first container builds a *base*: the chain flattened into a new
subvolume (:func:`pydock.core.layers.flatten.flatten`, which reflinks file data when the layers
are on the same btrfs filesystem), frozen by taking a read-only snapshot of it. The image's tree
sits in a ``rootfs`` directory inside the subvolume, because ``flatten`` creates the directory
it fills: that is how "/" gets the owner, mode and xattrs of the image's root. Every container
of that image gets a writable snapshot of the base as its root; the core bind-mounts it in the
container's mount namespace. The base is deleted with the last container that uses it, under a
lock, like the bind driver's shared directory. Under ``home``::

    lock                            serialises base creation and deletion
    bases/<key>/                    read-only subvolume: the flattened image, at rootfs/
    <container id>/base             symlink to the base: which one, and a count of its users
    <container id>/snapshot/        the container's writable snapshot of the base, root at rootfs/
    <container id>/merged/          the empty directory the core mounts the root on
    <container id>/base-build/      only while a first container builds its image's base

Subvolumes are created, snapshotted and deleted with the btrfs ioctls of ``linux/btrfs.h``
rather than the ``btrfs`` program: no dependency on btrfs-progs, no parsing of its output, and
errors arrive as errno values. Deleting a subvolume (``BTRFS_IOC_SNAP_DESTROY``) needs
CAP_SYS_ADMIN, which pydock has as root; it deletes a read-only subvolume whatever it holds,
except other subvolumes, which must go first (a container may create some: creating one needs
no capability).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from pydock.core.driver import Availability, Mount, StorageDriver, Usage, chain_key
from pydock.core.files import flocked
from pydock.core.layers.flatten import flatten
from pydock.core.syscalls import statfs_type

BTRFS_SUPER_MAGIC = 0x9123683E
# The inode number of every subvolume's root directory (BTRFS_FIRST_FREE_OBJECTID); no
# ordinary directory has it, which is how a subvolume nested in a container is recognised.
SUBVOLUME_ROOT_INODE = 256


def _iow(number: int, size: int) -> int:
    """``_IOW(BTRFS_IOCTL_MAGIC, number, size)``, as asm-generic/ioctl.h encodes it (x86_64,
    arm64 and most other architectures)."""
    return (1 << 30) | (size << 16) | (0x94 << 8) | number


# struct btrfs_ioctl_vol_args: __s64 fd; char name[BTRFS_PATH_NAME_MAX + 1 = 4088].
_VOL_ARGS = struct.Struct("=q4088s")
# struct btrfs_ioctl_vol_args_v2: __s64 fd; __u64 transid; __u64 flags; a 32-byte union
# (size and qgroup_inherit, unused here); char name[BTRFS_SUBVOL_NAME_MAX + 1 = 4040].
_VOL_ARGS_V2 = struct.Struct("=qQQ32x4040s")
BTRFS_IOC_SUBVOL_CREATE = _iow(14, _VOL_ARGS.size)
BTRFS_IOC_SNAP_DESTROY = _iow(15, _VOL_ARGS.size)
BTRFS_IOC_SNAP_CREATE_V2 = _iow(23, _VOL_ARGS_V2.size)
BTRFS_SUBVOL_RDONLY = 1 << 1

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Names for the filesystems a storage root is most often found on, for available()'s reason.
_FILESYSTEM_NAMES = {0xEF53: "ext4", 0x58465342: "xfs", 0x01021994: "tmpfs",
                     0x794C7630: "overlayfs", 0x2FC12FC1: "zfs", 0x6969: "nfs"}


class BtrfsDriver(StorageDriver):
    name = "btrfs"

    @classmethod
    def available(cls, home: Path) -> Availability:
        existing = _nearest_existing(home)
        magic = statfs_type(str(existing))
        if magic != BTRFS_SUPER_MAGIC:
            filesystem = _FILESYSTEM_NAMES.get(magic, f"a filesystem of type {magic:#x}")
            return Availability(False, f"{existing} is on {filesystem}, not btrfs: put --root "
                                       "on a btrfs filesystem")
        return Availability(True)

    def base_dir(self, layers: Sequence[Path]) -> Path:
        """The read-only subvolume holding this layer chain flattened (at ``rootfs``)."""
        return self.home / "bases" / chain_key(layers)

    def snapshot_dir(self, container_id: str) -> Path:
        """The container's writable snapshot of its base: its root is ``rootfs`` inside."""
        return self.container_dir(container_id) / "snapshot"

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        self.make_home()
        top = self.container_dir(container_id)
        top.mkdir(mode=0o700)
        self.rootfs_dir(container_id).mkdir(mode=0o700)
        base = self.base_dir(layers)
        with self._locked():
            # The link both records which base this container uses and counts it as a user,
            # so remove() knows when the last one is gone.
            os.symlink(base, top / "base")
            if not base.exists():
                self._build_base(top, layers, base)
            _snapshot(base, self.snapshot_dir(container_id))

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [Mount("bind", str(self.snapshot_dir(container_id) / "rootfs"))]

    def remove(self, container_id: str) -> None:
        if not self.home.exists():
            return
        top = self.container_dir(container_id)
        with self._locked():
            try:
                base: Path | None = Path(os.readlink(top / "base"))
            except FileNotFoundError:
                base = None
            # Subvolumes first: removing files one by one would cost what the snapshot saved,
            # and a read-only subvolume's files cannot be removed at all.
            _delete_subvolume(self.snapshot_dir(container_id))
            _delete_subvolume(top / "base-build")
            super().remove(container_id)
            if base is not None and not self._users(base):
                _delete_subvolume(base)

    def usage(self, container_id: str) -> Usage:
        """The files the container created or changed: allocated bytes and inode count.

        btrfs knows which extents a snapshot shares with its base only through quotas
        (qgroups), which this driver leaves off because they slow down every snapshot and
        deletion. What is counted instead: each inode of the snapshot that is not an unchanged
        inode of the base (a snapshot keeps inode numbers; any change to an inode sets its
        ctime), at its full allocated size. That is an upper bound of the space the container
        alone holds: a large image file changed in place is counted whole, although btrfs stores
        only the blocks written. Files the container deletes free nothing while the base exists,
        and count nothing. Costs a walk of both trees.
        """
        base = self.container_dir(container_id) / "base"
        unchanged = ({(st.st_ino, st.st_ctime_ns) for st in _inodes(base / "rootfs")}
                     if base.exists() else set())
        changed = {st.st_ino: st.st_blocks * 512
                   for st in _inodes(self.snapshot_dir(container_id) / "rootfs")
                   if (st.st_ino, st.st_ctime_ns) not in unchanged}
        return Usage(bytes=sum(changed.values()), inodes=len(changed))

    def metadata(self, container_id: str, layers: Sequence[Path]) -> dict[str, str]:
        return {"RootDir": str(self.snapshot_dir(container_id) / "rootfs"),
                "BaseDir": str(self.base_dir(layers) / "rootfs"),
                "MergedDir": str(self.rootfs_dir(container_id))}

    def _build_base(self, top: Path, layers: Sequence[Path], base: Path) -> None:
        # Built inside this container's own directory, which remove() cleans, so a build
        # interrupted by a crash is never left behind nor ever mistaken for a finished base;
        # then frozen into place by a read-only snapshot, which appears atomically.
        build = top / "base-build"
        _create_subvolume(build)
        flatten(layers, build / "rootfs")
        base.parent.mkdir(mode=0o700, exist_ok=True)
        _snapshot(build, base, read_only=True)
        _delete_subvolume(build)

    def _users(self, base: Path) -> list[str]:
        users = []
        for entry in os.scandir(self.home):
            with contextlib.suppress(OSError):
                if Path(os.readlink(os.path.join(entry.path, "base"))) == base:
                    users.append(entry.name)
        return users

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return flocked(self.home / "lock")


def _create_subvolume(path: Path) -> None:
    """Create an empty subvolume at ``path`` (``btrfs subvolume create``)."""
    _ioctl_in(path.parent, BTRFS_IOC_SUBVOL_CREATE, _VOL_ARGS.pack(0, _name(path)),
              f"create subvolume {path}")


def _snapshot(source: Path, path: Path, read_only: bool = False) -> None:
    """Snapshot the subvolume ``source`` at ``path``: O(1), whatever ``source`` holds."""
    source_fd = os.open(source, _DIR)
    try:
        args = _VOL_ARGS_V2.pack(source_fd, 0, BTRFS_SUBVOL_RDONLY if read_only else 0,
                                 _name(path))
        _ioctl_in(path.parent, BTRFS_IOC_SNAP_CREATE_V2, args, f"snapshot {source} at {path}")
    finally:
        os.close(source_fd)


def _delete_subvolume(path: Path) -> None:
    """Delete the subvolume at ``path`` and every subvolume nested in it; nothing if it is gone.

    Deletion is O(1) for the caller: btrfs frees the blocks in the background.
    """
    what = f"delete subvolume {path}"
    try:
        _ioctl_in(path.parent, BTRFS_IOC_SNAP_DESTROY, _VOL_ARGS.pack(0, _name(path)), what)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
        # Nested subvolumes, deepest first (a bottom-up walk lists a directory after what it
        # holds); rare enough that the common case need not pay for this walk.
        for dirpath, _dirnames, _filenames in os.walk(path, topdown=False):
            if dirpath != str(path) and os.lstat(dirpath).st_ino == SUBVOLUME_ROOT_INODE:
                _delete_subvolume(Path(dirpath))
        _ioctl_in(path.parent, BTRFS_IOC_SNAP_DESTROY, _VOL_ARGS.pack(0, _name(path)), what)


def _ioctl_in(directory: Path, request: int, args: bytes, what: str) -> None:
    """Issue a btrfs ioctl on ``directory``, whose entry the ioctl's name field names.

    Raises :class:`OSError` (the errno's own subclass) saying what was being done.
    """
    fd = os.open(directory, _DIR)
    try:
        # A mutable buffer: fcntl copies a bytes argument into a buffer of only 1024 bytes.
        fcntl.ioctl(fd, request, bytearray(args))
    except OSError as e:
        raise OSError(e.errno, f"{what}: {e.strerror}") from e
    finally:
        os.close(fd)


def _name(path: Path) -> bytes:
    """``path``'s last component for an ioctl's name field, which must end in a NUL byte."""
    name = os.fsencode(path.name)
    if len(name) >= 4040:  # the shorter of the two name fields, BTRFS_SUBVOL_NAME_MAX + 1
        raise OSError(errno.ENAMETOOLONG, f"{path}: name too long for a btrfs subvolume")
    return name


def _inodes(top: Path) -> Iterator[os.stat_result]:
    """lstat of every path in the tree at ``top``, ``top`` included; symlinks not followed.

    Nothing if ``top`` does not exist (a container whose prepare failed early)."""
    try:
        yield os.lstat(top)
    except FileNotFoundError:
        return
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            with contextlib.suppress(FileNotFoundError):
                yield os.lstat(os.path.join(dirpath, name))


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path
