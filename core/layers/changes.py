"""What a container changed, as ``docker diff`` prints it: ``A``, ``C`` and ``D`` lines.

Two ways to find out, as in docker:

* :func:`upper_changes` reads an overlay-format directory of changes (overlay's upper
  directory): cost proportional to the change, not to the image;
* :func:`walk_changes` compares a whole container root with the image (docker's
  NaiveDiffDriver), for drivers that keep no separate record of their changes.

Both judge against the image's merged view (:func:`image_lstat`, overlay semantics over
the layer chain) and never follow a symlink: a symlink in the image is an entry like any
other, and a path is looked up one component at a time.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydock.core.layers.format import OVERLAY_XATTR_PREFIX, is_opaque, is_whiteout

T = TypeVar("T")
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True, order=True)
class Change:
    path: str  # absolute, as seen inside the container
    kind: str  # "A" added, "C" changed, "D" deleted

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


def image_lstat(layers: Sequence[Path], path: str) -> os.stat_result | None:
    """What the image shows at ``path`` (overlay semantics), or None; layers bottom first."""
    parts = [p for p in path.split("/") if p]
    for layer in reversed(layers):
        found, _fd, hides_below = _probe(str(layer), parts, want_fd=False)
        if found is not None or hides_below:
            return found
    return None


def upper_changes(upper: Path, layers: Sequence[Path]) -> list[Change]:
    """The changes recorded in the overlay-format directory ``upper``, sorted by path."""
    changes: list[Change] = []

    def visit(directory: str, relative: str) -> None:
        with os.scandir(directory) as entries:
            for entry in entries:
                path = f"{relative}/{entry.name}"
                st = entry.stat(follow_symlinks=False)
                below = image_lstat(layers, path)
                if is_whiteout(st):
                    if below is not None:
                        changes.append(Change(path, "D"))
                    continue
                changes.append(Change(path, "A" if below is None else "C"))
                if stat.S_ISDIR(st.st_mode):
                    if below is not None and stat.S_ISDIR(below.st_mode) and _opaque(entry.path):
                        # Everything the image had below an opaque directory is gone,
                        # except what the upper directory itself brings back.
                        present = set(os.listdir(entry.path))
                        changes.extend(Change(f"{path}/{name}", "D")
                                       for name in image_listdir(layers, path) - present)
                    visit(entry.path, path)

    visit(str(upper), "")
    return sorted(changes)


def walk_changes(root: Path, layers: Sequence[Path]) -> list[Change]:
    """Compare the container root ``root`` with the image, entry by entry (the naive way)."""
    changes: list[Change] = []

    def visit(directory: str, relative: str) -> None:
        image_names = image_listdir(layers, relative)
        with os.scandir(directory) as entries:
            names = set()
            for entry in entries:
                names.add(entry.name)
                path = f"{relative}/{entry.name}"
                st = entry.stat(follow_symlinks=False)
                below = image_lstat(layers, path) if entry.name in image_names else None
                if below is None:
                    changes.extend(Change(p, "A") for p in _subtree(entry.path, path, st))
                    continue
                changed = _differs(st, below, entry.path, layers, path)
                if stat.S_ISDIR(st.st_mode) and not stat.S_ISDIR(below.st_mode):
                    # A directory where the image has a file: all it holds is new.
                    changes.extend(Change(p, "A") for p in _subtree(entry.path, path, st)
                                   if p != path)
                elif stat.S_ISDIR(st.st_mode):
                    before = len(changes)
                    visit(entry.path, path)
                    # As docker does: a directory with changes inside counts as changed
                    # (a commit must carry it to keep its permissions).
                    changed = changed or len(changes) > before
                if changed:
                    changes.append(Change(path, "C"))
        changes.extend(Change(f"{relative}/{name}", "D") for name in image_names - names)

    visit(str(root), "")
    return sorted(changes)


def image_listdir(layers: Sequence[Path], path: str) -> set[str]:
    """Names the image shows in directory ``path`` (whiteouts and opaque dirs applied)."""
    names: set[str] = set()
    hidden: set[str] = set()
    parts = [p for p in path.split("/") if p]
    for layer in reversed(layers):
        _found, fd, hides_below = _probe(str(layer), parts, want_fd=True)
        if fd is not None:
            try:
                for name in os.listdir(fd):
                    if name not in names and name not in hidden:
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        (hidden if is_whiteout(st) else names).add(name)
            finally:
                os.close(fd)
        if hides_below:
            break
    return names


def _probe(layer: str, parts: list[str],
           want_fd: bool) -> tuple[os.stat_result | None, int | None, bool]:
    """Look ``parts`` up in one layer, one component at a time, never through a symlink.

    Returns the entry (None if absent or whited out), a descriptor of it when it is a
    directory and ``want_fd``, and whether this layer hides the path in the layers below:
    a whiteout or a non-directory on the way, or an opaque directory at or above it.
    """
    fd = os.open(layer, _DIR_FLAGS)
    try:
        opaque = _opaque(fd)
        for index, name in enumerate(parts):
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                return None, None, opaque
            if is_whiteout(st):
                return None, None, True
            if not stat.S_ISDIR(st.st_mode):
                return (st if index == len(parts) - 1 else None), None, True
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
            opaque = opaque or _opaque(fd)
        st = os.fstat(fd)
        if want_fd:
            result, fd = fd, -1
            return st, result, opaque
        return st, None, opaque
    finally:
        if fd >= 0:
            os.close(fd)


def _opaque(source: int | str) -> bool:
    """Whether a directory (a descriptor, or a path not followed) is opaque; not if its
    xattrs cannot be read."""
    with contextlib.suppress(OSError):
        return is_opaque(source)
    return False


def _differs(st: os.stat_result, below: os.stat_result, path: str, layers: Sequence[Path],
             relative: str) -> bool:
    # docker's naive differ: type, permissions, owner, and for non-directories size and
    # modification time (content is not read); symlinks by target and devices by number.
    if (stat.S_IFMT(st.st_mode) != stat.S_IFMT(below.st_mode)
            or stat.S_IMODE(st.st_mode) != stat.S_IMODE(below.st_mode)
            or (st.st_uid, st.st_gid) != (below.st_uid, below.st_gid)):
        return True
    # Unlike docker's, extended attributes count too: an xattr-only change (setcap, a
    # user.* label) must reach a commit. It moves ctime only, not mtime.
    if _xattrs(path) != _image_xattrs(layers, relative):
        return True
    if stat.S_ISDIR(st.st_mode):
        return False
    if stat.S_ISLNK(st.st_mode):
        return os.readlink(path) != _image_readlink(layers, relative)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return st.st_rdev != below.st_rdev
    return st.st_size != below.st_size or st.st_mtime_ns != below.st_mtime_ns


def _xattrs(path: str) -> dict[str, bytes]:
    """The xattrs a layer carries for an entry: all but overlay's own ``trusted.overlay.*``."""
    try:
        return {name: os.getxattr(path, name, follow_symlinks=False)
                for name in os.listxattr(path, follow_symlinks=False)
                if not name.startswith(OVERLAY_XATTR_PREFIX)}
    except OSError:
        return {}


def _image_xattrs(layers: Sequence[Path], relative: str) -> dict[str, bytes]:
    return _in_top_layer(layers, relative,
                         lambda fd, name: _xattrs(f"/proc/self/fd/{fd}/{name}"), {})


def _image_readlink(layers: Sequence[Path], relative: str) -> str:
    return _in_top_layer(layers, relative, lambda fd, name: os.readlink(name, dir_fd=fd), "")


def _in_top_layer(layers: Sequence[Path], relative: str, read: Callable[[int, str], T],
                  default: T) -> T:
    """``read(parent_fd, name)`` in the topmost layer that has ``relative``."""
    parent, _, name = relative.rpartition("/")
    parts = [p for p in parent.split("/") if p]
    for layer in reversed(layers):
        _found, fd, hides_below = _probe(str(layer), parts, want_fd=True)
        if fd is not None:
            try:
                os.stat(name, dir_fd=fd, follow_symlinks=False)
                return read(fd, name)
            except FileNotFoundError:
                pass
            finally:
                os.close(fd)
        if hides_below:
            break
    return default


def _subtree(path: str, relative: str, st: os.stat_result) -> Iterator[str]:
    yield relative
    if stat.S_ISDIR(st.st_mode):
        with os.scandir(path) as entries:
            for entry in entries:
                yield from _subtree(entry.path, f"{relative}/{entry.name}",
                                    entry.stat(follow_symlinks=False))
