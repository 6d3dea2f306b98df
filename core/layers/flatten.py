"""Layers merged onto a plain tree, for drivers that do not mount overlay (copy, bind).

:func:`apply_layer` merges one overlay-format layer (:mod:`pydock.core.layers.format`) onto a
plain directory holding the layers below it already merged; :func:`flatten` builds a whole
image's tree that way. The result must be exactly what an overlay mount of the same chain
shows, so the merge follows the kernel's rules, including one that is easy to miss: an opaque
xattr on a layer's *root* is ignored.

The tree being merged into is untrusted: a lower layer may have made ``etc`` a symlink to ``/``
or ``lib`` one to ``../../..``. Nothing in it is ever followed: the layer and the target are
walked in step (:class:`pydock.core.files.TreeWalk`), each directory opened ``O_NOFOLLOW``
relative to its parent's descriptor once the merge made it a directory, and each entry is
replaced, removed or created with the ``*at`` calls relative to that descriptor. Layer
directories themselves are pydock's own and are read the same way. Trees of any depth merge.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

from pydock.core.files import DirCursor, TreeWalk, lstat_at, remove_tree_at
from pydock.core.layers.format import (
    OVERLAY_XATTR_PREFIX,
    check_self_contained,
    is_opaque,
    is_whiteout,
    join,
    layer_xattrs,
)
from pydock.core.layers.treecopy import EntryCopier, copy_tree

# ACLs a destination directory hands down to new entries, which the source may not have.
_ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def apply_layer(layer: Path, target: Path) -> None:
    """Merge the overlay-format directory ``layer`` onto the plain directory ``target``.

    ``target`` holds the layers below, already merged; afterwards it shows what an overlay
    mount of the chain shows. A whiteout deletes its path (a directory with all it holds); a
    directory replaces a non-directory, and merges with a directory, keeping its entries but
    taking the layer directory's owner, mode, times and xattrs; an opaque directory first drops
    everything below it; anything else replaces what is there. Hardlinks within the layer stay
    hardlinks; otherwise entries keep all that :func:`pydock.core.layers.treecopy.copy_tree` keeps,
    except overlay's own trusted.overlay.* xattrs, which a mount does not show either. No
    whiteout or opaque marker ends up in ``target``.

    Raises :class:`PydockError` for overlay metadata this cannot merge (redirects, metacopy),
    and :class:`OSError` naming the layer path that failed; ``target`` is then half-merged.
    """
    layer_fd = os.open(layer, _DIR)
    try:
        target_fd = os.open(target, _DIR)
        try:
            _Merger(layer_fd, target_fd, layer).merge()
        finally:
            os.close(target_fd)
    finally:
        os.close(layer_fd)


def flatten(layers: Sequence[Path], target: Path) -> None:
    """Merge a whole layer chain (bottom first) into ``target``, which must not exist yet.

    The bottom layer is copied with :func:`copy_tree` (the fast path: reflinks, threads),
    then stripped of what overlay itself would hide there: whiteouts and its own
    ``trusted.overlay.*`` xattrs, which have nothing below them to act on. Every other
    layer is merged with :func:`apply_layer`.
    """
    if not layers:
        target.mkdir(mode=0o755)
        return
    copy_tree(layers[0], target)
    _strip_overlay_markers(target)
    for layer in layers[1:]:
        apply_layer(layer, target)


def _strip_overlay_markers(top: Path) -> None:
    top_fd = os.open(top, _DIR)
    try:
        _strip_xattrs(top_fd)
        walk = TreeWalk(top_fd, ordered=False)
        for entry in walk:
            if entry.leaving:
                continue
            if entry.is_dir:
                # Entered right after this step: its descriptor is held by the walk, but
                # the xattr calls take a path, which /proc/self/fd keeps short.
                fd = os.open(entry.name, _DIR, dir_fd=entry.dir_fd)
                try:
                    _strip_xattrs(fd)
                finally:
                    os.close(fd)
            elif entry.st is not None and is_whiteout(entry.st):
                os.unlink(entry.name, dir_fd=entry.dir_fd)
    finally:
        os.close(top_fd)


def _strip_xattrs(dir_fd: int) -> None:
    for attr in os.listxattr(dir_fd):
        if attr.startswith(OVERLAY_XATTR_PREFIX):
            os.removexattr(dir_fd, attr)


class _Merger:
    """One merge of a layer onto a tree: the copier, hardlinks seen, directories to finish."""

    def __init__(self, layer_fd: int, target_fd: int, layer: Path) -> None:
        self._layer_fd = layer_fd
        self._target_fd = target_fd
        self._layer = layer
        self._copier = EntryCopier()
        # (st_dev, st_ino) of a layer inode with several links -> the path of its first copy.
        self._links: dict[tuple[int, int], str] = {}

    def merge(self) -> None:
        walk = TreeWalk(self._layer_fd, mirror_fd=self._target_fd)
        # The layer path of the directory at each depth of the walk, "" for the root.
        paths = [""]
        self._links_to = DirCursor(self._target_fd)
        try:
            for entry in walk:
                assert entry.st is not None
                path = join(paths[walk.depth], entry.name)
                try:
                    if entry.leaving:
                        # Last, so that creating entries cannot move a directory's mtime;
                        # and deepest first.
                        self._finish_dir(entry.dir_fd, entry.mirror_fd, entry.name, entry.st,
                                         path)
                    elif self._merge_entry(entry.dir_fd, entry.mirror_fd, entry.name, path,
                                           entry.st):
                        del paths[walk.depth + 1:]
                        paths.append(path)
                except OSError as e:
                    raise OSError(e.errno, f"{self._layer / path}: {e.strerror}") from e
            self._finish_root()
        finally:
            self._links_to.close()

    def _merge_entry(self, src_fd: int, dst_fd: int, name: str, path: str,
                     st: os.stat_result) -> bool:
        """Merge one entry; True for a directory whose entries are still to be merged."""
        if is_whiteout(st):
            _remove(dst_fd, name)
            return False
        if stat.S_ISDIR(st.st_mode):
            there = lstat_at(dst_fd, name)
            # The layer root is never opaque to the kernel; it is not an entry, so not seen here.
            opaque = is_opaque(f"/proc/self/fd/{src_fd}/{name}")
            if there is None or not stat.S_ISDIR(there.st_mode) or opaque:
                _remove(dst_fd, name)
                os.mkdir(name, 0o700, dir_fd=dst_fd)
            return True
        _remove(dst_fd, name)
        if st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                parent, _, first_name = first.rpartition("/")
                first_dir_fd = self._links_to.open([p for p in parent.split("/") if p])
                try:
                    os.link(first_name, name, src_dir_fd=first_dir_fd, dst_dir_fd=dst_fd,
                            follow_symlinks=False)
                finally:
                    os.close(first_dir_fd)
                return False
        self._copier.copy(src_fd, dst_fd, name, st)
        self._drop_foreign_xattrs(src_fd, dst_fd, name, path)
        return False

    def _drop_foreign_xattrs(self, src_fd: int, dst_fd: int, name: str, path: str) -> None:
        """Remove from a fresh copy the xattrs an overlay mount would not show on the original:
        overlay's own, and ACLs handed down by a target directory that has a default ACL."""
        copy = f"/proc/self/fd/{dst_fd}/{name}"
        names = os.listxattr(copy, follow_symlinks=False)
        check_self_contained(names, self._layer / path)
        source_names: list[str] | None = None
        for key in names:
            if key in _ACL_XATTRS:
                if source_names is None:
                    source_names = os.listxattr(f"/proc/self/fd/{src_fd}/{name}",
                                                follow_symlinks=False)
                if key in source_names:
                    continue
            elif not key.startswith(OVERLAY_XATTR_PREFIX):
                continue
            os.removexattr(copy, key, follow_symlinks=False)

    def _finish_root(self) -> None:
        st = os.fstat(self._layer_fd)
        self._finish(self._layer_fd, self._target_fd, st, "")

    def _finish_dir(self, layer_fd: int, target_fd: int, name: str, st: os.stat_result,
                    path: str) -> None:
        src_fd = os.open(name, _DIR, dir_fd=layer_fd)
        try:
            dst_fd = os.open(name, _DIR, dir_fd=target_fd)
            try:
                self._finish(src_fd, dst_fd, st, path)
            finally:
                os.close(dst_fd)
        finally:
            os.close(src_fd)

    def _finish(self, src_fd: int, dst_fd: int, st: os.stat_result, path: str) -> None:
        """Give the merged directory ``path`` the owner, xattrs, mode and times of the layer's."""
        wanted = layer_xattrs(src_fd, self._layer / path)
        os.fchown(dst_fd, st.st_uid, st.st_gid)  # first: chown clears setgid
        for key in os.listxattr(dst_fd):
            if key not in wanted or key.startswith(OVERLAY_XATTR_PREFIX):
                os.removexattr(dst_fd, key)
        for key, value in wanted.items():
            if not key.startswith(OVERLAY_XATTR_PREFIX):
                os.setxattr(dst_fd, key, value)
        os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
        os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))

def _remove(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` if there is anything, never following a symlink."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        # Never follows a symlink inside the tree it removes, and any depth goes.
        remove_tree_at(dir_fd, name)
