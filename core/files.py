"""Small-file primitives: atomic replacement (readers see the old content or the new,
never a mix), advisory locks, tree removal, and lookups relative to a directory descriptor.

Everything here is on the path of every ``pydock run``, so it sticks to ``os``: the
``secrets`` and ``shutil`` modules would cost milliseconds of imports per run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from pydock.core import failpoints
from pydock.core.errors import PydockError
from pydock.core.processes import process_start_time


def hidden_name(prefix: str) -> str:
    """A fresh name for scratch work of the calling process: ``<prefix><pid>-<start
    time>-<random>``, the convention :mod:`pydock.core.leftovers` sweeps by. Here rather
    than there because the atomic writes below need it, and leftovers needs remove_tree."""
    pid = os.getpid()
    return f"{prefix}{pid}-{process_start_time(pid)}-{os.urandom(8).hex()}"


def scratch_file(directory: Path) -> BinaryIO:
    """A read-write file in ``directory`` that has no name, so that no crash can leave it
    behind (``tempfile.TemporaryFile`` without its ``tmpXXXXXXXX`` fallback name).

    Where the filesystem cannot make an unnamed file (O_TMPFILE), it gets a hidden name
    (``.tmp-``, swept once this process is gone) and loses it at once.
    """
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR):
            raise
        path = directory / hidden_name(".tmp-")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        os.unlink(path)
    return os.fdopen(fd, "w+b")


def remove_tree(path: Path | str) -> None:
    """Delete ``path`` and everything below it, as ``shutil.rmtree`` does.

    Works through directory descriptors and never follows a symlink, so a link placed in
    the tree (by a container, say) cannot redirect the removal outside it; a tree of any
    depth goes (see :class:`TreeWalk`).
    """
    fd = os.open(path, DIR_FLAGS)
    try:
        _empty(fd)
    finally:
        os.close(fd)
    os.rmdir(path)


def remove_tree_at(dir_fd: int, name: str) -> None:
    """Delete directory ``name`` of ``dir_fd`` and everything below it (as :func:`remove_tree`)."""
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        _empty(fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=dir_fd)


def _empty(top_fd: int) -> None:
    walk = TreeWalk(top_fd, want_stat=False, ordered=False)
    for entry in walk:
        if entry.leaving:
            os.rmdir(entry.name, dir_fd=entry.dir_fd)
        elif not entry.is_dir:
            os.unlink(entry.name, dir_fd=entry.dir_fd)


DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# Directory descriptors a walk keeps open at most, whatever the depth: a 10,000-level tree
# would otherwise need 10,000 of them, past RLIMIT_NOFILE.
WALK_WINDOW = 64


class WalkEntry:
    """One step of a :class:`TreeWalk`: entry ``name`` of the directory open as ``dir_fd``
    (and the same directory of the mirror tree as ``mirror_fd``, -1 without one).

    ``leaving`` steps come after everything below directory ``name`` was walked (the place
    to remove it or set its final attributes); the descriptors are valid until the next step.
    """

    __slots__ = ("dir_fd", "is_dir", "leaving", "mirror_fd", "name", "st")

    def __init__(self, dir_fd: int, mirror_fd: int, name: str, is_dir: bool,
                 st: os.stat_result | None, leaving: bool) -> None:
        self.dir_fd = dir_fd
        self.mirror_fd = mirror_fd
        self.name = name
        self.is_dir = is_dir
        self.st = st  # lstat of the entry, when the walk was asked for it
        self.leaving = leaving


class _Frame:
    """A directory being walked: its descriptors, the walked tree's then the mirror's if any
    (-1 while closed to stay in the window), their identities to check a reopening against,
    and its entries still to visit, the next last."""

    __slots__ = ("entry", "fds", "idents", "name", "todo")

    def __init__(self, fds: list[int], name: str, entry: WalkEntry | None,
                 todo: list[tuple[str, bool, os.stat_result | None]]) -> None:
        self.fds = fds
        self.idents = [(st.st_dev, st.st_ino) for st in map(os.fstat, fds)]
        self.name = name
        self.entry = entry
        self.todo = todo

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.fds = [-1] * len(self.fds)


class TreeWalk:
    """Depth-first walk of the tree below the directory open as ``top_fd``, by descriptors.

    Iterative (no recursion limit) and built on openat with ``O_NOFOLLOW`` (no path string
    grows with the depth, so no PATH_MAX; a symlink is an entry, never entered): the only
    depth limit is the kernel's. Each directory is entered right after its own step, unless
    :meth:`skip` is called during that step. At most :data:`WALK_WINDOW` directories are
    open: deeper down, the oldest ancestors are closed, and each is reopened on the way back
    up as ``..`` of its child, checked (device, inode) to be the directory left, so that a
    directory moved meanwhile stops the walk instead of taking it elsewhere.

    With ``mirror_fd``, a second tree is walked in step, for a copy or a merge: each
    directory entered is entered there too, under the same name (which the step must have
    made if missing). ``flags`` are added to the walked tree's opens (``O_NOATIME``).

    ``sort_key`` orders each directory's entries (by name if not given: walks are
    reproducible), unless not ``ordered`` (listing order: for a removal, sorting is a cost
    with nothing to show for it); the top descriptors stay open and belong to the caller.
    """

    def __init__(self, top_fd: int, want_stat: bool = True,
                 sort_key: Callable[[tuple[str, os.stat_result | None]], Any] | None = None,
                 ordered: bool = True, mirror_fd: int | None = None, flags: int = 0) -> None:
        self._want_stat = want_stat
        self._sort_key = sort_key
        self._ordered = ordered
        self._flags = (DIR_FLAGS | flags, DIR_FLAGS)
        tops = [top_fd] if mirror_fd is None else [top_fd, mirror_fd]
        self._stack = [_Frame(tops, "", None, self._list(top_fd))]
        self._skip = False

    @property
    def names(self) -> list[str]:
        """Names of the directories entered, top first: the path of the current directory."""
        return [frame.name for frame in self._stack[1:]]

    @property
    def depth(self) -> int:
        return len(self._stack) - 1

    def skip(self) -> None:
        """Do not enter the directory of the current step."""
        self._skip = True

    def _list(self, fd: int) -> list[tuple[str, bool, os.stat_result | None]]:
        entries: list[tuple[str, bool, os.stat_result | None]] = []
        with os.scandir(fd) as listing:
            for entry in listing:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                    # A stat result is some 600 bytes: a directory of a million files
                    # listed with them would take 600 MB. Only special files (whiteouts,
                    # which sort differently) are stat'ed now; the others as they come.
                    special = self._want_stat and not (
                        is_dir or entry.is_file(follow_symlinks=False) or entry.is_symlink())
                    entries.append((entry.name, is_dir,
                                    entry.stat(follow_symlinks=False) if special else None))
                except FileNotFoundError:  # removed since the listing
                    continue
        if self._ordered and self._sort_key is None:
            entries.sort(key=lambda e: e[0], reverse=True)
        elif self._ordered and self._sort_key is not None:
            key = self._sort_key
            entries.sort(key=lambda e: key((e[0], e[2])), reverse=True)
        return entries

    def __iter__(self) -> Iterator[WalkEntry]:
        stack = self._stack
        try:
            while True:
                frame = stack[-1]
                if frame.todo:
                    name, is_dir, st = frame.todo.pop()
                    fds = frame.fds
                    if st is None and self._want_stat:
                        try:
                            st = os.stat(name, dir_fd=fds[0], follow_symlinks=False)
                        except FileNotFoundError:  # removed since the listing
                            continue
                    step = WalkEntry(fds[0], fds[1] if len(fds) > 1 else -1, name, is_dir, st,
                                     False)
                    self._skip = False
                    yield step
                    if is_dir and not self._skip:
                        self._enter(frame, step)
                    continue
                if len(stack) == 1:
                    return
                yield self._leave()
        finally:
            for frame in stack[1:]:
                frame.close()
            del stack[1:]

    def _enter(self, parent: _Frame, step: WalkEntry) -> None:
        fds: list[int] = []
        try:
            for index, parent_fd in enumerate(parent.fds):
                fds.append(os.open(step.name, self._flags[index], dir_fd=parent_fd))
            frame = _Frame(fds, step.name, step, self._list(fds[0]))
        except FileNotFoundError:
            for fd in fds:
                os.close(fd)
            if fds:
                raise
            return  # removed from the walked tree since the listing: nothing left to walk
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._stack.append(frame)
        if len(self._stack) > WALK_WINDOW + 1:
            self._stack[-WALK_WINDOW - 1].close()

    def _leave(self) -> WalkEntry:
        child = self._stack.pop()
        parent = self._stack[-1]
        try:
            for index, fd in enumerate(parent.fds):
                if fd >= 0:
                    continue
                fd = os.open("..", self._flags[index], dir_fd=child.fds[index])
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != parent.idents[index]:
                    os.close(fd)
                    raise OSError(errno.ESTALE, f"{child.name!r} moved during a tree walk")
                parent.fds[index] = fd
        finally:
            child.close()
        assert child.entry is not None  # only the top has none, and it is never left
        fds = parent.fds
        return WalkEntry(fds[0], fds[1] if len(fds) > 1 else -1, child.name, True,
                         child.entry.st, True)


class DirCursor:
    """Opens directories by their path of names below ``top_fd``, one component at a time
    (openat, ``O_NOFOLLOW``), starting from where the last call left off: from ``a/b/c`` to
    ``a/b/d`` costs one step up and one down, so a walk in tree order opens each directory
    about once however deep the tree is, and no path string is ever handed to the kernel
    (no PATH_MAX). Like :class:`TreeWalk`, it holds at most :data:`WALK_WINDOW` descriptors
    and reopens a closed ancestor as ``..`` of its child, checked by (device, inode).

    Made for trees that only this process changes, by creating and removing entries: a
    directory removed since the last call is noticed (it has no links left) and the path is
    then opened from ``top_fd`` again.
    """

    def __init__(self, top_fd: int) -> None:
        self._top = top_fd
        self._names: list[str] = []
        self._fds: list[int] = []  # -1: closed to stay within the window
        self._idents: list[tuple[int, int]] = []

    def open(self, names: list[str],
             create: Callable[[int, str, int], int] | None = None) -> int:
        """A new descriptor (the caller's to close) of the directory at ``names``.

        A missing component is made by ``create(parent_fd, name, index)``, which returns a
        descriptor of it, if given; otherwise, and for any other failure (a symlink:
        ``ELOOP``, a non-directory: ``ENOTDIR``), the :class:`OSError` is raised.
        """
        if self._fds and os.fstat(self._fds[-1]).st_nlink == 0:
            self.close()
        common = 0
        for have, want in zip(self._names, names, strict=False):
            if have != want:
                break
            common += 1
        try:
            while len(self._names) > common:
                self._up()
            for index in range(common, len(names)):
                parent = self._fds[-1] if self._fds else self._top
                try:
                    fd = os.open(names[index], DIR_FLAGS, dir_fd=parent)
                except FileNotFoundError:
                    if create is None:
                        raise
                    fd = create(parent, names[index], index)
                self._push(names[index], fd)
        except BaseException:
            self.close()
            raise
        return os.dup(self._fds[-1] if self._fds else self._top)

    def close(self) -> None:
        """Close every descriptor held; the next :meth:`open` starts from the top."""
        for fd in self._fds:
            if fd >= 0:
                os.close(fd)
        self._names, self._fds, self._idents = [], [], []

    def _push(self, name: str, fd: int) -> None:
        st = os.fstat(fd)
        self._names.append(name)
        self._fds.append(fd)
        self._idents.append((st.st_dev, st.st_ino))
        if len(self._fds) > WALK_WINDOW and self._fds[-WALK_WINDOW - 1] >= 0:
            os.close(self._fds[-WALK_WINDOW - 1])
            self._fds[-WALK_WINDOW - 1] = -1

    def _up(self) -> None:
        child = self._fds.pop()
        self._names.pop()
        self._idents.pop()
        try:
            if self._fds and self._fds[-1] < 0:
                fd = os.open("..", DIR_FLAGS, dir_fd=child)
                st = os.fstat(fd)
                if (st.st_dev, st.st_ino) != self._idents[-1]:
                    os.close(fd)
                    raise OSError(errno.ESTALE, "a directory moved under a directory cursor")
                self._fds[-1] = fd
        finally:
            os.close(child)


def write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is written (a pipe or terminal may take less at once)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def lstat_at(dir_fd: int, name: str) -> os.stat_result | None:
    """``name`` in directory ``dir_fd``, not followed if it is a symlink; None if there is
    nothing there."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def read_regular(path: str, limit: int, name: str = "") -> bytes:
    """The content of the regular file ``path``, which an image, a container or a flag
    names.

    Anything else is refused, before a byte is read: a FIFO put there would block the
    reader for good (with the record's lock held, signals blocked), a device would answer
    without end (``/dev/zero``) or with the host's data, a socket cannot be read. The open
    itself cannot block (O_NONBLOCK: a FIFO opens at once, without a writer), nor take a
    terminal as controlling terminal (O_NOCTTY). A symlink is followed: callers read inside
    the container's own root, where it cannot lead out. PydockError if it is not a regular
    file or holds more than ``limit`` bytes (naming it ``name``, by default its path);
    OSError if it cannot be opened.
    """
    name = name or path
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PydockError(f"{name} is not a regular file")
        chunks, size = [], 0
        # st_size is not trusted: /proc's files say 0, and a file may grow as it is read.
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise PydockError(f"{name} is larger than {limit} bytes")
    return b"".join(chunks)


def sha256_hex(data: bytes) -> str:
    # Not hashlib: loading it (OpenSSL) costs some 15 ms, and every `pydock run` hashes its
    # storage root's path for its cgroup's name (pydock.core.runtime.cgroups.cgroup_name).
    # CPython's own SHA-256 gives the same digest for a third of a millisecond of import;
    # a Python built without it falls back to hashlib.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        from hashlib import sha256

    return str(sha256(data).hexdigest())


def write_bytes_atomic(path: Path, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Write to a hidden file beside ``path`` (``.new-``, swept once this process is gone),
    fsync it, then rename it over ``path``.

    Not ``durable``: no fsync, for a state that a power cut makes moot anyway. Readers
    still see the old content or the new, and ext4 writes a file renamed over another
    before the rename itself reaches the disk.
    """
    tmp = path.with_name(hidden_name(".new-"))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        failpoints.reached("write.before-rename")
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, data: Any, durable: bool = True) -> None:
    write_bytes_atomic(path, json.dumps(data, indent=1).encode(), durable=durable)


@contextlib.contextmanager
def flocked(path: Path, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or ``shared``) flock on ``path``, created when missing."""
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
