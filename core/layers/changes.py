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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydock.core.files import TreeWalk
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
    top_fd = os.open(upper, _DIR_FLAGS)
    try:
        walk = TreeWalk(top_fd)
        # The path of the directory at each depth of the walk, "" for the top.
        paths = [""]
        for entry in walk:
            if entry.leaving or entry.st is None:
                continue
            path = f"{paths[walk.depth]}/{entry.name}"
            st = entry.st
            below = image_lstat(layers, path)
            if is_whiteout(st):
                if below is not None:
                    changes.append(Change(path, "D"))
                continue
            changes.append(Change(path, "A" if below is None else "C"))
            if entry.is_dir:
                del paths[walk.depth + 1:]
                paths.append(path)
                if below is not None and stat.S_ISDIR(below.st_mode) and _opaque(
                        f"/proc/self/fd/{entry.dir_fd}/{entry.name}"):
                    # Everything the image had below an opaque directory is gone,
                    # except what the upper directory itself brings back.
                    present = set(_listdir_at(entry.dir_fd, entry.name))
                    changes.extend(Change(f"{path}/{name}", "D")
                                   for name in image_listdir(layers, path) - present)
    finally:
        os.close(top_fd)
    return sorted(changes)


class _Compared:
    """A directory of the container root being compared with the image's: its path, and
    for a directory the image has too, the image's names, the names seen, the change count
    when it was entered and whether it differs itself (None: all below it is new)."""

    __slots__ = ("before", "changed", "image_names", "path", "seen")

    def __init__(self, path: str, image_names: set[str] | None, before: int = 0,
                 changed: bool = False) -> None:
        self.path = path
        self.image_names = image_names
        self.seen: set[str] = set()
        self.before = before
        self.changed = changed


def walk_changes(root: Path, layers: Sequence[Path]) -> list[Change]:
    """Compare the container root ``root`` with the image, entry by entry (the naive way)."""
    changes: list[Change] = []
    top_names = image_listdir(layers, "")
    top = _Compared("", top_names)
    # The directory at each depth of the walk.
    dirs = [top]
    top_fd = os.open(root, _DIR_FLAGS)
    try:
        walk = TreeWalk(top_fd)
        for entry in walk:
            if entry.leaving:
                # The directory left sits one below the walk's depth now; anything deeper
                # here vanished before it was entered.
                del dirs[walk.depth + 2:]
                _close_compared(dirs.pop(), changes)
                continue
            st = entry.st
            if st is None:
                continue
            # A directory that vanished before it was entered has no leaving step.
            del dirs[walk.depth + 1:]
            parent = dirs[-1]
            path = f"{parent.path}/{entry.name}"
            if parent.image_names is None or entry.name not in parent.image_names:
                below = None
            else:
                parent.seen.add(entry.name)
                below = image_lstat(layers, path)
            if below is None:
                changes.append(Change(path, "A"))
                if entry.is_dir:
                    dirs.append(_Compared(path, None))
                continue
            changed = _differs(st, below, f"/proc/self/fd/{entry.dir_fd}/{entry.name}",
                               layers, path)
            if entry.is_dir and stat.S_ISDIR(below.st_mode):
                # Whether it changed is known once all it holds was compared.
                dirs.append(_Compared(path, image_listdir(layers, path), len(changes),
                                      changed))
                continue
            if entry.is_dir:  # a directory where the image has a file: all it holds is new
                dirs.append(_Compared(path, None))
            if changed:
                changes.append(Change(path, "C"))
    finally:
        os.close(top_fd)
    # The top itself is no change, only what it holds.
    changes.extend(Change(f"/{name}", "D") for name in top_names - top.seen)
    return sorted(changes)


def _close_compared(directory: _Compared, changes: list[Change]) -> None:
    """Record what comparing the whole of ``directory`` found: its deleted entries, and
    itself as changed if anything below it changed (as docker does: a commit must carry
    it to keep its permissions)."""
    if directory.image_names is None:
        return
    changes.extend(Change(f"{directory.path}/{name}", "D")
                   for name in directory.image_names - directory.seen)
    if directory.changed or len(changes) > directory.before:
        changes.append(Change(directory.path, "C"))


def _listdir_at(dir_fd: int, name: str) -> list[str]:
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


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



# Where pydock bind mounts a container's own /etc/hostname, /etc/hosts and /etc/resolv.conf
# (pydock.core.runtime.etcfiles). Where the image has none, pydock makes an empty file there
# (and /etc, if the image has none) in the container's root to mount on: those are pydock's
# mount points, not the container's changes, and diff, commit and export leave them out, as
# docker's do (it makes them in an "init" layer below the container's own).
MOUNT_POINT_DIR = "/etc"
MOUNT_POINTS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def mount_points_made(tree: Path, layers: Sequence[Path]) -> set[str]:
    """The mount points pydock made in the container tree ``tree`` (its changes directory or
    its whole root) that are still as it made them: empty regular files where the image has
    nothing, and /etc itself when the image has none and it holds nothing else. Nothing
    in ``tree`` is followed: a container may have made /etc a symlink to anywhere."""
    try:
        tree_fd = os.open(tree, _DIR_FLAGS)
    except FileNotFoundError:
        return set()
    try:
        try:
            etc_fd = os.open(MOUNT_POINT_DIR.strip("/"), _DIR_FLAGS, dir_fd=tree_fd)
        except OSError:  # none, or not a directory (a symlink is not followed)
            return set()
        try:
            made = set()
            names = os.listdir(etc_fd)
            for path in MOUNT_POINTS:
                name = path.rpartition("/")[2]
                if name not in names or image_lstat(layers, path) is not None:
                    continue
                st = os.stat(name, dir_fd=etc_fd, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_size == 0:
                    made.add(path)
        finally:
            os.close(etc_fd)
    finally:
        os.close(tree_fd)
    if made and image_lstat(layers, MOUNT_POINT_DIR) is None and len(names) == len(made):
        made.add(MOUNT_POINT_DIR)
    return made


def without_mount_points(changes: Sequence[Change], made: set[str], tree: Path,
                         layers: Sequence[Path]) -> list[Change]:
    """``changes`` less pydock's mount points (:func:`mount_points_made`), and less the
    change of /etc that making them caused (overlay copies a directory up to create a file
    in it), if nothing else changed below it and its owner and mode are the image's."""
    kept = [change for change in changes if change.path not in made]
    if not made or MOUNT_POINT_DIR in made:
        return kept
    below = image_lstat(layers, MOUNT_POINT_DIR)
    prefix = MOUNT_POINT_DIR + "/"
    if below is None or any(change.path.startswith(prefix) for change in kept):
        return kept
    try:
        st = os.lstat(tree / MOUNT_POINT_DIR.strip("/"))
    except OSError:
        return kept
    if (st.st_mode, st.st_uid, st.st_gid) != (below.st_mode, below.st_uid, below.st_gid):
        return kept
    return [change for change in kept if change.path != MOUNT_POINT_DIR]
