"""``pydock cp``: copying between the host and a container's root, never out of the root.

Every path on the container's side is resolved *inside its root*, by descriptor: the
directory the path names is opened with openat2(RESOLVE_IN_ROOT)
(:func:`pydock.core.syscalls.open_in_root`), so a symlink in the container (``/data ->
/etc``, ``/x -> ../../../host``) leads to the container's own ``/etc``, never the host's,
and ``..`` stops at the root. Below that directory the walk is by name relative to
descriptors already open, with O_NOFOLLOW everywhere: a symlink met there is copied as a
symlink, never followed, and a destination that is a symlink is replaced, never written
through. No path string that could cross a symlink reaches the kernel, so a container
that swaps a directory for a symlink while the copy runs gains nothing (the race of
CVE-2018-15664, docker cp's symlink-exchange attack).

What is kept, as docker's cp keeps it: file types (regular files, directories, symlinks,
fifos), permission bits and modification times. Owners: the destination's user (root in
the container; on the host, the user running pydock), or with ``archive`` (``cp -a``) the
source's uid and gid. Where pydock is stricter than docker: a device node is refused (a
node a container made, copied to the host, would open the host's device), setuid and
setgid bits are dropped on the way out unless ``archive`` (a container's setuid file must
not become a host binary that runs as root), and /proc or /sys on the container's side
are refused. Hard links are copied as separate files.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Callable, Iterator

from pydock.core.errors import PydockError
from pydock.core.syscalls import open_in_root, statfs_type

PROC_SUPER_MAGIC, SYSFS_MAGIC = 0x9FA0, 0x62656572
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_CHUNK = 1 << 20


class Endpoint:
    """One side of a copy: the directory holding the entry (a descriptor, ours to close),
    the entry's name there, and the path to say in messages. ``name`` "." with ``contents``:
    the directory's contents (``SRC/.``)."""

    def __init__(self, parent: int, name: str, shown: str, contents: bool = False) -> None:
        self.parent = parent
        self.name = name
        self.shown = shown
        self.contents = contents

    def close(self) -> None:
        os.close(self.parent)


def copy_out(root_fd: int, source: str, destination: str, archive: bool) -> None:
    """Copy ``source`` (a path inside the root ``root_fd``) to the host path ``destination``."""
    with _closing(_in_root_source(root_fd, source)) as src:
        owner = None if archive else (os.geteuid(), os.getegid())
        _copy(src, destination, _host_destination, owner, strip_setid=not archive)


def copy_in(root_fd: int, source: str, destination: str, archive: bool) -> None:
    """Copy the host path ``source`` to ``destination``, a path inside the root ``root_fd``."""
    with _closing(_host_source(source)) as src:
        _copy(src, destination, lambda dest, is_dir: _in_root_destination(root_fd, dest, is_dir),
              None if archive else (0, 0), strip_setid=False)


# -- the two sides --------------------------------------------------------------------

def _in_root_source(root_fd: int, path: str) -> Endpoint:
    clean, contents = _clean(path)
    parent_path, name = posixpath.split(clean)
    if not name:  # the root itself: its contents
        return Endpoint(_open_dir_in_root(root_fd, "/", path), ".", path, contents=True)
    parent = _open_dir_in_root(root_fd, parent_path, path)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        os.close(parent)
        raise PydockError(f"{path}: {exc.strerror} in the container") from None
    if contents and not stat.S_ISDIR(st.st_mode):
        os.close(parent)
        raise PydockError(f"{path}: not a directory in the container")
    if contents:
        fd = os.open(name, _DIR, dir_fd=parent)
        os.close(parent)
        return Endpoint(fd, ".", path, contents=True)
    return Endpoint(parent, name, path)


def _in_root_destination(root_fd: int, path: str, source_is_dir: bool) -> Endpoint:
    clean, contents = _clean(path)
    if clean == "/" or path.endswith("/") or contents:
        # Must be a directory that exists: what is copied goes into it.
        return Endpoint(_open_dir_in_root(root_fd, clean, path), "", path)
    parent_path, name = posixpath.split(clean)
    parent = _open_dir_in_root(root_fd, parent_path, path)
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return Endpoint(parent, name, path)
    if stat.S_ISLNK(st.st_mode):
        with contextlib.suppress(PydockError):  # a link to a directory: into that directory
            into = _open_dir_in_root(root_fd, clean, path)
            os.close(parent)
            return Endpoint(into, "", path)
        return Endpoint(parent, name, path)  # a link to anything else is replaced
    if stat.S_ISDIR(st.st_mode):
        into = os.open(name, _DIR, dir_fd=parent)
        os.close(parent)
        return Endpoint(into, "", path)
    return Endpoint(parent, name, path)


def _host_source(path: str) -> Endpoint:
    contents = path.endswith(("/.", "/./")) or path == "."
    clean = os.path.abspath(path)
    parent_path, name = os.path.split(clean)
    if contents or not name:
        return Endpoint(_open_host_dir(clean), ".", path, contents=True)
    parent = _open_host_dir(parent_path)
    try:
        os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError as exc:
        os.close(parent)
        raise PydockError(f"{path}: {exc.strerror}") from None
    return Endpoint(parent, name, path)


def _host_destination(path: str, source_is_dir: bool) -> Endpoint:
    clean = os.path.abspath(path)
    if os.path.isdir(clean):
        return Endpoint(_open_host_dir(clean), "", path)
    if path.endswith("/"):
        raise PydockError(f"destination directory {path} does not exist")
    parent_path, name = os.path.split(clean)
    return Endpoint(_open_host_dir(parent_path), name, path)


def _open_dir_in_root(root_fd: int, path: str, shown: str) -> int:
    try:
        fd = open_in_root(root_fd, path, _DIR)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise PydockError(f"{shown}: {reason} in the container") from None
    if statfs_type(f"/proc/self/fd/{fd}") in (PROC_SUPER_MAGIC, SYSFS_MAGIC):
        os.close(fd)
        raise PydockError(f"{shown}: under the container's /proc or /sys, which cp leaves "
                          "alone")
    return fd


def _open_host_dir(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise PydockError(f"{path}: {exc.strerror}") from None


def _clean(path: str) -> tuple[str, bool]:
    """The path made absolute and lexically clean (``..`` stops at ``/``), and whether it
    asks for a directory's contents (``dir/.``)."""
    contents = path.endswith(("/.", "/./")) or path in (".", "./")
    return "/" + posixpath.normpath("/" + path).lstrip("/"), contents


@contextlib.contextmanager
def _closing(endpoint: Endpoint) -> Iterator[Endpoint]:
    try:
        yield endpoint
    finally:
        endpoint.close()


# -- the copy ---------------------------------------------------------------------------

def _copy(src: Endpoint, destination: str, open_destination: Callable[[str, bool], Endpoint],
          owner: tuple[int, int] | None, strip_setid: bool) -> None:
    st = os.stat(src.name, dir_fd=src.parent, follow_symlinks=False)
    dst = open_destination(destination, stat.S_ISDIR(st.st_mode))
    copier = _Copier(owner, strip_setid)
    try:
        if src.contents:
            if dst.name:  # `cp dir/. new`: new is made as a copy of dir
                copier.entry(src.parent, ".", dst.parent, dst.name)
            else:
                copier.contents(src.parent, dst.parent)
        else:
            copier.entry(src.parent, src.name, dst.parent, dst.name or src.name)
    except OSError as exc:
        raise PydockError(f"copying {src.shown} to {dst.shown}: {exc}") from None
    finally:
        dst.close()


class _Copier:
    def __init__(self, owner: tuple[int, int] | None, strip_setid: bool) -> None:
        self.owner = owner
        self.strip_setid = strip_setid

    def contents(self, src_dir: int, dst_dir: int) -> None:
        for name in os.listdir(src_dir):
            self.entry(src_dir, name, dst_dir, name)

    def entry(self, src_dir: int, name: str, dst_dir: int, dst_name: str) -> None:
        st = os.stat(name, dir_fd=src_dir, follow_symlinks=False)
        mode = stat.S_IMODE(st.st_mode)
        if self.strip_setid:
            mode &= ~(stat.S_ISUID | stat.S_ISGID)
        uid, gid = self.owner or (st.st_uid, st.st_gid)
        if stat.S_ISDIR(st.st_mode):
            self._directory(src_dir, name, dst_dir, dst_name, st)
        else:
            self._make_room(dst_dir, dst_name, directory=False)
            if stat.S_ISREG(st.st_mode):
                self._file(src_dir, name, dst_dir, dst_name)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst_name, 0o600, dir_fd=dst_dir)
            else:
                raise OSError(f"{name}: a device node or socket, which cp does not copy")
        os.chown(dst_name, uid, gid, dir_fd=dst_dir, follow_symlinks=False)
        if not stat.S_ISLNK(st.st_mode):
            # After chown, which clears setuid and setgid bits.
            self._chmod(dst_dir, dst_name, mode)
        os.utime(dst_name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst_dir,
                 follow_symlinks=False)

    @staticmethod
    def _chmod(dst_dir: int, name: str, mode: int) -> None:
        # By descriptor, with O_NOFOLLOW: the entry was just made, and must be what we chmod.
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dst_dir)
        try:
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)

    def _directory(self, src_dir: int, name: str, dst_dir: int, dst_name: str,
                   st: os.stat_result) -> None:
        if not self._make_room(dst_dir, dst_name, directory=True):
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
        source = os.open(name, _DIR, dir_fd=src_dir)
        try:
            target = os.open(dst_name, _DIR, dir_fd=dst_dir)
            try:
                self.contents(source, target)
            finally:
                os.close(target)
        finally:
            os.close(source)

    @staticmethod
    def _make_room(dst_dir: int, name: str, directory: bool) -> bool:
        """Clear the way for ``name``: True if a directory is there to copy a directory
        into; a file or symlink is removed (replaced, never written through)."""
        try:
            st = os.stat(name, dir_fd=dst_dir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            if directory:
                return True
            raise OSError(f"{name} is a directory, and what is copied is not")
        if directory:
            raise OSError(f"cannot copy a directory onto {name}, which is not one")
        os.unlink(name, dir_fd=dst_dir)
        return False

    @staticmethod
    def _file(src_dir: int, name: str, dst_dir: int, dst_name: str) -> None:
        source = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
        try:
            target = os.open(dst_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=dst_dir)
            try:
                while os.sendfile(target, source, None, _CHUNK):
                    pass
            finally:
                os.close(target)
        finally:
            os.close(source)
