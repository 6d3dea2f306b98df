"""A full, faithful copy of a directory tree, for drivers that give each container its own copy.

:func:`shutil.copytree` is not enough for a container root: it turns hardlinks into separate
files, opens device nodes and reads them as if they were files, drops ownership, and quietly
skips extended attributes it cannot copy (overlay's ``trusted.overlay.opaque`` among them).
``cp -a`` does the job but is a subprocess whose errors arrive as text. This module does what
``cp -a`` does, in-process, with fewer system calls than it makes:

* Nothing in the source is followed through a symlink: every entry is lstat'ed, a directory is
  entered only after lstat said it is one, and files and directories are opened ``O_NOFOLLOW``.
  An image's symlink to ``/`` or to a host path is copied as a symlink and nothing outside
  ``src`` is read. (The source must not change during the copy; image layers do not.)
* Data moves inside the kernel: a reflink where the filesystem shares extents (btrfs, XFS),
  otherwise ``copy_file_range``, with ``sendfile`` and plain read/write as fallbacks.
* Attributes are applied in the one order that keeps them all: data first (a write drops
  setuid bits and file capabilities), then owner (chown clears setuid/setgid and
  ``security.capability``), then xattrs, then mode, then times. A directory gets its owner,
  xattrs, mode and times only once the whole tree is written, so creating its children cannot
  move its mtime, and its default ACL cannot spread to copied children that did not have one.
  Directories are finished deepest first, so a parent's final mode (0000, say) is set only
  once nothing below it still needs reaching.

Extended attributes go through :func:`os.listxattr` and friends rather than the ``xattr``
package used elsewhere: on this hot loop the package measured ~6x slower per call (two system
calls for a listing) and refuses ``XATTR_NOFOLLOW`` on a descriptor.

Sources are opened with ``O_NOATIME``, so copying an image layer leaves its atimes alone (but a
symlink's: readlink always updates it); that, like ``mknod``, ``chown`` and ``trusted.*``
xattrs, needs root, which pydock has.

Files of 1 MiB and more are copied by two worker threads while the main thread goes on walking:
on 2 cores that copied a tree of 64 MiB files 1.8x faster. Smaller files stay on the main thread,
where handing them over measured up to 80% slower: GIL hand-offs between many short system
calls cost more than the overlap gains.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

_FICLONE = 0x40049409
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.EXDEV, errno.EINVAL, errno.ENOTTY})
_NO_COPY_FILE_RANGE = frozenset({errno.ENOSYS, errno.EXDEV, errno.EINVAL, errno.EOPNOTSUPP})
_NO_SENDFILE = frozenset({errno.ENOSYS, errno.EINVAL})

_SRC_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME
_DST_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a regular file be swapped for a fifo under us, fail instead of hanging.
_SRC_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME | os.O_NONBLOCK
_DST_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

# Ways to move file data, best first. Once one reports "unsupported" for a file, it will for
# every file of the same copy, so the copier moves down the list for good.
_REFLINK, _COPY_FILE_RANGE, _SENDFILE, _READ_WRITE = range(4)
_CHUNK = 1 << 20
_BIG = 1 << 20  # files at least this large are copied by the pool
_WORKERS = 2

_Xattrs = list[tuple[str, bytes]]
_Pending = list[tuple[str, str, os.stat_result]]


def copy_tree(src: Path, dst: Path) -> None:
    """Copy the tree at ``src`` to ``dst``, which must not exist yet (its parent must).

    Preserves file types (regular, directory, symlink, character and block devices, fifos,
    sockets), all mode bits, numeric owner and group, atime and mtime to the nanosecond,
    symlink targets verbatim, hardlinks within the tree and every extended attribute root can
    read. Raises :class:`OSError` naming the path that failed (``FileExistsError`` if ``dst``
    exists); what was copied so far is left for the caller to remove.
    """
    _Copier().copy(os.fspath(src), os.fspath(dst))


class EntryCopier:
    """Copies one non-directory entry at a time, keeping all that :func:`copy_tree` keeps but
    hardlinks, between directories the caller holds open: for code that walks a tree itself,
    such as :func:`pydock.core.layers.flatten.apply_layer`.

    Unlike under copy_tree, the destination directories already have their final attributes,
    so a new inode may get its group from a setgid directory or its mode from a default ACL:
    owner and mode are always set here, never skipped as looking right already.
    """

    def __init__(self) -> None:
        self._copier = _Copier()
        # Nothing is owned by (uid_t)-1, and with no mode bit "free" chmod is skipped only for
        # mode 0, which no umask or ACL can get wrong.
        self._copier.owner = (-1, -1)
        self._copier.free_bits = 0

    def copy(self, src_dir_fd: int, dst_dir_fd: int, name: str, st: os.stat_result) -> None:
        """Create ``name`` in ``dst_dir_fd``, where nothing has that name, as a copy of ``name``
        in ``src_dir_fd``, which ``st`` describes (lstat). Neither is followed if a symlink."""
        # The /proc/self/fd links name exactly the directories held; only the name-based xattr
        # calls for symlinks and special files use them, and never follow the last component.
        self._copier.copy_node(src_dir_fd, dst_dir_fd, f"/proc/self/fd/{src_dir_fd}",
                               f"/proc/self/fd/{dst_dir_fd}", name, st)


def _error(e: OSError, path: str) -> OSError:
    return OSError(e.errno, f"copy {path}: {e.strerror}")


def _umask() -> int:
    """The process umask, read without setting it (os.umask cannot read without writing)."""
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    return 0o777  # unknown: assume every bit is masked, so every mode gets set explicitly


# xattrs go through os.listxattr and friends, not the xattr package: its listxattr costs two
# system calls and ~6x the time of os.listxattr, about 5% of a copy of small files, and it
# refuses XATTR_NOFOLLOW on an fd with errno 0.
def _read_xattrs(source: int | str) -> _Xattrs:
    """All xattrs of an open fd, or of a path itself (a symlink is not followed)."""
    follow = isinstance(source, int)  # os refuses follow_symlinks=False with an fd
    return [(name, os.getxattr(source, name, follow_symlinks=follow))
            for name in os.listxattr(source, follow_symlinks=follow)]


def _write_xattrs(target: int | str, attrs: _Xattrs) -> None:
    follow = isinstance(target, int)
    for name, value in attrs:
        os.setxattr(target, name, value, follow_symlinks=follow)


class _Copier:
    """State of one copy: the data method still believed to work, hardlinks seen, directories
    whose attributes are still to be set, and what a new inode gets without being asked."""

    def __init__(self) -> None:
        self.method = _REFLINK
        # (st_dev, st_ino) of a source inode with several links -> its first copy's path.
        self.links: dict[tuple[int, int], str] = {}
        # Every copied directory in the order it was filled, each after its parent.
        self.dirs: list[tuple[str, str, os.stat_result, _Xattrs]] = []
        # Until the final pass every directory under dst is ours (dst itself is chowned to us
        # first) and has no default ACL, so a new inode is owned by us and gets its create mode
        # less the umask. chown and chmod are skipped where that is already right: on a tree of
        # small files they would be a fifth of the system calls.
        self.owner = (os.geteuid(), os.getegid())
        self.free_bits = 0o777 & ~_umask()
        self.pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="copy_tree")
        self.jobs: list[Future[None]] = []

    def copy(self, src: str, dst: str) -> None:
        try:
            st = os.lstat(src)
            if not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        except OSError as e:
            raise _error(e, src) from e
        try:
            os.mkdir(dst, 0o700)
            # What dst inherits from its parent (a group with a setgid bit, a default ACL) its
            # children must not inherit; the source root's own attributes come at the end.
            os.chown(dst, *self.owner)
            for name in os.listxattr(dst):
                if name.startswith("system.posix_acl_"):
                    os.removexattr(dst, name)
        except OSError as e:
            raise _error(e, dst) from e
        pending: _Pending = [(src, dst, st)]
        try:
            while pending:
                self.fill_dir(*pending.pop(), pending)
        except BaseException:
            # Jobs not started yet have opened nothing; the caller may delete dst once the
            # running ones are done.
            self.pool.shutdown(cancel_futures=True)
            raise
        self.pool.shutdown()
        for job in self.jobs:
            job.result()
        for src_dir, dst_dir, st, attrs in reversed(self.dirs):
            try:
                os.chown(dst_dir, st.st_uid, st.st_gid)
                _write_xattrs(dst_dir, attrs)
                os.chmod(dst_dir, stat.S_IMODE(st.st_mode))
                os.utime(dst_dir, ns=(st.st_atime_ns, st.st_mtime_ns))
            except OSError as e:
                raise _error(e, src_dir) from e

    def fill_dir(self, src: str, dst: str, st: os.stat_result, pending: _Pending) -> None:
        """Create the entries of one directory; queue its subdirectories for later."""
        try:
            src_fd = os.open(src, _SRC_DIR)
        except OSError as e:
            raise _error(e, src) from e
        try:
            try:
                self.dirs.append((src, dst, st, _read_xattrs(src_fd)))
                with os.scandir(src_fd) as listing:
                    entries = list(listing)
                dst_fd = os.open(dst, _DST_DIR)
            except OSError as e:
                raise _error(e, src) from e
            try:
                for entry in entries:
                    name = entry.name
                    try:
                        self.copy_entry(src_fd, dst_fd, src, dst, name,
                                        entry.stat(follow_symlinks=False), pending)
                    except OSError as e:
                        raise _error(e, f"{src}/{name}") from e
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    def copy_entry(self, src_fd: int, dst_fd: int, src: str, dst: str, name: str,
                   st: os.stat_result, pending: _Pending) -> None:
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst_fd)
            pending.append((f"{src}/{name}", f"{dst}/{name}", st))
            return
        if st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            first = self.links.get(key)
            if first is not None:
                os.link(first, name, dst_dir_fd=dst_fd, follow_symlinks=False)
                return
            self.links[key] = f"{dst}/{name}"
        # A hardlinked file is created here and now: a link to it may come next.
        if stat.S_ISREG(mode) and st.st_size >= _BIG and st.st_nlink == 1:
            self.jobs.append(self.pool.submit(
                self.copy_file_in_pool, f"{src}/{name}", f"{dst}/{name}", st))
        else:
            self.copy_node(src_fd, dst_fd, src, dst, name, st)

    def copy_node(self, src_fd: int, dst_fd: int, src: str, dst: str, name: str,
                  st: os.stat_result) -> None:
        """Copy the non-directory ``name`` of ``src`` (open as ``src_fd``) into ``dst``."""
        mode = st.st_mode
        if stat.S_ISREG(mode):
            self.copy_file(name, name, st, src_fd, dst_fd)
            return
        perm = stat.S_IMODE(mode)
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src_fd), name, dir_fd=dst_fd)
        else:
            os.mknod(name, stat.S_IFMT(mode) | (perm & 0o777), st.st_rdev, dir_fd=dst_fd)
        if (st.st_uid, st.st_gid) != self.owner:
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst_fd, follow_symlinks=False)
        attrs = _read_xattrs(f"{src}/{name}")
        if attrs:
            _write_xattrs(f"{dst}/{name}", attrs)
        # A symlink's mode is always 0777 and cannot be changed.
        if perm & ~self.free_bits and not stat.S_ISLNK(mode):
            os.chmod(name, perm, dir_fd=dst_fd)
        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_fd,
                 follow_symlinks=False)

    def copy_file_in_pool(self, src: str, dst: str, st: os.stat_result) -> None:
        try:
            self.copy_file(src, dst, st)
        except OSError as e:
            raise _error(e, src) from e

    def copy_file(self, src_name: str, dst_name: str, st: os.stat_result,
                  src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        perm = stat.S_IMODE(st.st_mode)
        src = os.open(src_name, _SRC_FILE, dir_fd=src_dir_fd)
        try:
            dst = os.open(dst_name, _DST_FILE, perm & 0o777, dir_fd=dst_dir_fd)
            try:
                if st.st_size:
                    self.copy_data(src, dst, st.st_size)
                if (st.st_uid, st.st_gid) != self.owner:
                    os.chown(dst, st.st_uid, st.st_gid)
                for attr in os.listxattr(src):
                    os.setxattr(dst, attr, os.getxattr(src, attr))
                if perm & ~self.free_bits:
                    os.chmod(dst, perm)
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(dst)
        finally:
            os.close(src)

    def copy_data(self, src: int, dst: int, size: int) -> None:
        """Copy ``size`` bytes (fewer if the file shrank) from ``src`` to ``dst``."""
        if self.method == _REFLINK:
            try:
                fcntl.ioctl(dst, _FICLONE, src)
                return
            except OSError as e:
                if e.errno not in _NO_REFLINK:
                    raise
                self.method = _COPY_FILE_RANGE
        left = size
        if self.method == _COPY_FILE_RANGE:
            try:
                while left:
                    n = os.copy_file_range(src, dst, left)
                    if not n:
                        break
                    left -= n
            except OSError as e:
                if e.errno not in _NO_COPY_FILE_RANGE or left != size:
                    raise
                self.method = _SENDFILE
        if self.method == _SENDFILE:
            try:
                while left:
                    n = os.sendfile(dst, src, None, left)
                    if not n:
                        break
                    left -= n
            except OSError as e:
                if e.errno not in _NO_SENDFILE or left != size:
                    raise
                self.method = _READ_WRITE
        # Also finishes a file that the kernel copy calls reported at EOF too early (some
        # filesystems answer copy_file_range with 0 rather than an error).
        while left:
            data = memoryview(os.read(src, min(left, _CHUNK)))
            if not data:
                break
            left -= len(data)
            while data:
                data = data[os.write(dst, data):]
