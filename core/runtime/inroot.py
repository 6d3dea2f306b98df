"""Making a path exist inside a container's root, and opening it, as if the root were ``/``.

openat2(RESOLVE_IN_ROOT) (:func:`pydock.core.syscalls.open_in_root`) resolves a path that
exists. A volume's destination may not exist yet, and may lead through a symlink whose
target does not exist either (``/data -> ../../../host``): the missing parts must be
created, and created where the symlink points *inside the root*. Handing the kernel the
path ``<rootfs>/data/...`` would follow that symlink out of the root and create, or mount
on, a host path.

So the walk goes one component at a time, every lookup relative to the descriptor of a
directory already resolved, with O_NOFOLLOW: a symlink's target is read and fed back into
the walk (from the root when it is absolute), ``..`` never climbs above the root, and a
missing component is created with mkdirat on its parent's descriptor. No path string that
could cross a symlink ever reaches the kernel. (runc's MkdirAllInRoot, from
cyphar/filepath-securejoin, does the same job.)
"""

from __future__ import annotations

import os
import stat
from collections.abc import Collection
from typing import NamedTuple

from pydock.core.errors import PydockError

# How many symlinks the kernel follows in one lookup before it gives up with ELOOP.
MAX_SYMLINKS = 40

_DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Opened(NamedTuple):
    """An O_PATH descriptor (the caller closes it) and where it is inside the root."""

    fd: int
    path: str  # absolute inside the root, every symlink resolved: "/etc/app.conf"


def open_or_create(root_fd: int, path: str, directory: bool,
                   refuse_under: Collection[str] = ()) -> Opened:
    """Open ``path`` inside the root ``root_fd``, creating whatever is missing.

    Missing parents become directories (0755); a missing last component becomes a
    directory if ``directory``, otherwise an empty file (0644). What exists must fit:
    directories all the way, and a last component that is a directory exactly when
    ``directory`` is true. A path that resolves into one of ``refuse_under`` (absolute
    paths inside the root) is refused before anything is created there, and so is one
    that resolves to the root itself. Errors, those of a failed mkdir or open included,
    are :class:`PydockError` naming the path as resolved so far.
    """
    pending = _components(path)
    names: list[str] = []  # the directories entered so far, below the root
    dirs: list[int] = []  # their descriptors, ours to close; the last is where we are
    followed = 0
    where = path
    try:
        while pending:
            name = pending.pop(0)
            here = dirs[-1] if dirs else root_fd
            if name == "..":
                if dirs:  # at the root, ".." is the root: nothing leads out of it
                    os.close(dirs.pop())
                    names.pop()
                continue
            where = "/" + "/".join([*names, name])
            _refuse(where, refuse_under)
            st = _lstat_or_create(here, name, directory or bool(pending))
            if stat.S_ISLNK(st.st_mode):
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise PydockError(f"{path}: too many levels of symbolic links")
                target = os.readlink(name, dir_fd=here)
                if target.startswith("/"):
                    while dirs:
                        os.close(dirs.pop())
                    names.clear()
                pending[:0] = _components(target)
            elif stat.S_ISDIR(st.st_mode):
                dirs.append(os.open(name, _DIRECTORY, dir_fd=here))
                names.append(name)
            elif pending or directory:
                raise PydockError(f"{where} is not a directory")
            else:
                return Opened(os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC,
                                      dir_fd=here), where)
        if not dirs:
            raise PydockError(f"{path} resolves to the root itself")
        if not directory:
            raise PydockError(f"/{'/'.join(names)} is a directory, not a file")
        return Opened(dirs.pop(), "/" + "/".join(names))
    except OSError as exc:
        raise PydockError(f"{where}: {exc.strerror}") from None
    finally:
        for fd in dirs:
            os.close(fd)


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _refuse(where: str, refuse_under: Collection[str]) -> None:
    for top in refuse_under:
        if where == top or where.startswith(top + "/"):
            raise PydockError(f"it resolves to {where}, under {top}, which is not allowed")


def _lstat_or_create(parent: int, name: str, directory: bool) -> os.stat_result:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        pass
    if directory:
        os.mkdir(name, 0o755, dir_fd=parent)
    else:
        os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o644, dir_fd=parent))
    return os.stat(name, dir_fd=parent, follow_symlinks=False)
