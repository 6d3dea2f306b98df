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
from collections.abc import Iterator
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
    the tree (by a container, say) cannot redirect the removal outside it.
    """
    for _top, dirs, files, top_fd in os.fwalk(path, topdown=False):
        for name in files:
            os.unlink(name, dir_fd=top_fd)
        for name in dirs:
            try:
                os.rmdir(name, dir_fd=top_fd)
            except NotADirectoryError:  # a symlink to a directory: fwalk lists it, never enters
                os.unlink(name, dir_fd=top_fd)
    os.rmdir(path)


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


def read_regular(path: str, limit: int) -> bytes:
    """The content of the regular file ``path``, which an image or a container controls.

    Anything else is refused, before a byte is read: a FIFO put there would block the
    reader for good (with the record's lock held, signals blocked), a device would answer
    without end (``/dev/zero``) or with the host's data, a socket cannot be read. The open
    itself cannot block (O_NONBLOCK: a FIFO opens at once, without a writer), nor take a
    terminal as controlling terminal (O_NOCTTY). A symlink is followed: callers read inside
    the container's own root, where it cannot lead out. PydockError if it is not a regular
    file or holds more than ``limit`` bytes; OSError if it cannot be opened.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PydockError(f"{path} is not a regular file")
        chunks, size = [], 0
        # st_size is not trusted: /proc's files say 0, and a file may grow as it is read.
        while size <= limit and (chunk := os.read(fd, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise PydockError(f"{path} is larger than {limit} bytes")
    return b"".join(chunks)


def sha256_hex(data: bytes) -> str:
    # hashlib is imported here, on first use: loading it (OpenSSL) costs milliseconds that a
    # plain `pydock run` of an existing image never needs.
    import hashlib

    return hashlib.sha256(data).hexdigest()


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
