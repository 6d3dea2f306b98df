"""The overlay layer format, in both directions: out to OCI tar, and flattened onto a tree.

Every layer in the store is a directory in the kernel's overlay format (a deleted path is a
character device 0/0, a *whiteout*; a directory that hides everything below it carries
``trusted.overlay.opaque=y``), so the overlay driver can mount the layers as they are.
:mod:`pydock.core.layers.unpack` converts OCI whiteouts into that format on import. The other
directions live here:

* :func:`write_layer_tar` turns a layer directory (a stored layer for ``image save``, an
  overlay upper directory for ``commit``) back into an OCI layer tar. The output is
  deterministic, so the same tree always gets the same diff_id.
* :func:`apply_layer` merges one layer onto a plain directory holding the layers below it
  already merged, for drivers that do not mount overlay (copy, bind). The result must be
  exactly what an overlay mount of the same chain shows, so it follows the kernel's rules,
  including one that is easy to miss: an opaque xattr on a layer's *root* is ignored.

The tree being merged into is untrusted: a lower layer may have made ``etc`` a symlink to ``/``
or ``lib`` one to ``../../..``. Nothing in it is ever followed: each directory is opened with
openat2(RESOLVE_IN_ROOT) relative to the target (:func:`pydock.core.syscalls.open_in_root`) and
``O_NOFOLLOW``, and each entry is replaced, removed or created with the ``*at`` calls relative
to that descriptor. Layer directories themselves are pydock's own and are read the same way.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

from pydock.core.errors import PydockError
from pydock.core.layers.treecopy import EntryCopier
from pydock.core.syscalls import open_in_root

OPAQUE_XATTR = "trusted.overlay.opaque"

_OVERLAY_PREFIX = "trusted.overlay."
# Overlay metadata that makes an upper directory depend on its lower layers (a renamed directory
# that still points at its old lower path; a file whose data was never copied up): such a tree
# is not a self-contained layer, and pydock's overlay mounts never enable either feature.
_UNSUPPORTED_XATTRS = ("trusted.overlay.redirect", "trusted.overlay.metacopy")
# ACLs a destination directory hands down to new entries, which the source may not have.
_ACL_XATTRS = ("system.posix_acl_access", "system.posix_acl_default")
_WHITEOUT_PREFIX = ".wh."
_OPAQUE_MARKER = ".wh..wh..opq"
_XATTR_PAX_PREFIX = "SCHILY.xattr."
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a regular file be swapped for a fifo under us, fail instead of hanging.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME | os.O_NONBLOCK
_NODE_TYPES = {
    stat.S_IFCHR: tarfile.CHRTYPE,
    stat.S_IFBLK: tarfile.BLKTYPE,
    stat.S_IFIFO: tarfile.FIFOTYPE,
}


def is_whiteout(st: os.stat_result) -> bool:
    """Whether ``st`` (an lstat result) is an overlay whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def write_layer_tar(out: BinaryIO, layer: Path) -> str:
    """Write the overlay-format directory ``layer`` to ``out`` as an OCI layer tar.

    Returns the hex sha256 of the bytes written, the layer's diff_id. The same tree always
    gives the same bytes: a depth-first walk with each directory's entries sorted by their
    name in the tar (bytes), PAX format, numeric owners only, mtimes in whole seconds (rounded
    down) and no atime or ctime. A whiteout becomes an empty ``.wh.NAME`` (mode 0, owner 0:0);
    an opaque directory is followed by an empty ``DIR/.wh..wh..opq``. Hardlinked paths after
    the first become hardlink entries to it; sockets are left out, as are trusted.* xattrs
    (other xattrs go in SCHILY.xattr records). The layer root itself has no entry.

    Raises :class:`PydockError` for overlay metadata that has no OCI form (redirects,
    metacopy), and :class:`OSError` if the layer cannot be read.
    """
    writer = _HashingWriter(out)
    root_fd = os.open(layer, _DIR)
    try:
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            _TarWriter(tar, root_fd, layer).write()
    finally:
        os.close(root_fd)
    return writer.sha256.hexdigest()


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
    from pydock.core.layers.treecopy import copy_tree

    if not layers:
        target.mkdir(mode=0o755)
        return
    copy_tree(layers[0], target)
    _strip_overlay_markers(target)
    for layer in layers[1:]:
        apply_layer(layer, target)


def _strip_overlay_markers(top: Path) -> None:
    # os.walk never descends through a symlink, and the tree is our own fresh copy.
    for dirpath, _dirnames, filenames in os.walk(top):
        for attr in os.listxattr(dirpath, follow_symlinks=False):
            if attr.startswith("trusted.overlay."):
                os.removexattr(dirpath, attr, follow_symlinks=False)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if is_whiteout(os.lstat(path)):
                os.unlink(path)


class _HashingWriter(io.RawIOBase):
    def __init__(self, out: BinaryIO) -> None:
        super().__init__()
        self._out = out
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = memoryview(data)
        self._out.write(view)
        self.sha256.update(view)
        return len(view)


class _TarWriter:
    """One walk of a layer into a tar: the walk's order and the hardlinks seen so far."""

    def __init__(self, tar: tarfile.TarFile, root_fd: int, layer: Path) -> None:
        self._tar = tar
        self._root_fd = root_fd
        self._layer = layer
        # (st_dev, st_ino) of an inode with several links -> the first path written for it.
        self._links: dict[tuple[int, int], str] = {}

    def write(self) -> None:
        # Paths still to write, the next one last; iterative, as trees can be deeper than
        # Python's recursion limit.
        pending: list[tuple[str, os.stat_result]] = []
        self._add_children(self._root_fd, "", pending)
        while pending:
            path, st = pending.pop()
            parent, _, name = path.rpartition("/")
            parent_fd = open_in_root(self._root_fd, parent or ".", _DIR)
            try:
                self._add(parent_fd, parent, name, st, pending)
            except OSError as e:
                raise OSError(e.errno, f"{self._layer / path}: {e.strerror}") from e
            finally:
                os.close(parent_fd)

    def _add(self, parent_fd: int, parent: str, name: str, st: os.stat_result,
             pending: list[tuple[str, os.stat_result]]) -> None:
        path = _join(parent, name)
        mode = st.st_mode
        if is_whiteout(st):
            self._add_marker(_join(parent, _WHITEOUT_PREFIX + name), st)
            return
        if stat.S_ISDIR(mode):
            fd = os.open(name, _DIR, dir_fd=parent_fd)
            try:
                self._tar.addfile(self._info(path, tarfile.DIRTYPE, st, self._xattrs(fd, path)))
                self._add_children(fd, path, pending)
            finally:
                os.close(fd)
            return
        # A socket means something only to the process that bound it.
        if stat.S_ISSOCK(mode) or self._add_link(path, st):
            return
        if stat.S_ISREG(mode):
            fd = os.open(name, _FILE, dir_fd=parent_fd)
            with open(fd, "rb") as file:
                info = self._info(path, tarfile.REGTYPE, st, self._xattrs(fd, path))
                info.size = os.fstat(fd).st_size
                self._tar.addfile(info, file)
            return
        node = f"/proc/self/fd/{parent_fd}/{name}"
        if stat.S_ISLNK(mode):
            info = self._info(path, tarfile.SYMTYPE, st, self._xattrs(node, path))
            info.linkname = os.readlink(name, dir_fd=parent_fd)
        else:
            info = self._info(path, _NODE_TYPES[stat.S_IFMT(mode)], st, self._xattrs(node, path))
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self._tar.addfile(info)

    def _add_children(self, dir_fd: int, path: str,
                      pending: list[tuple[str, os.stat_result]]) -> None:
        """Write the opaque marker of directory ``path`` if it has one; queue its entries."""
        # Written for the root too, although the kernel ignores it there: so that the tar
        # holds everything the layer does.
        if _xattr(dir_fd, OPAQUE_XATTR) == b"y":
            self._add_marker(_join(path, _OPAQUE_MARKER), os.fstat(dir_fd))
        with os.scandir(dir_fd) as listing:
            entries = [(entry.name, entry.stat(follow_symlinks=False)) for entry in listing]
        entries.sort(key=lambda item: os.fsencode(
            _WHITEOUT_PREFIX + item[0] if is_whiteout(item[1]) else item[0]), reverse=True)
        pending.extend((_join(path, name), st) for name, st in entries)

    def _xattrs(self, source: int | str, path: str) -> dict[str, bytes]:
        return _read_xattrs(source, self._layer / path)

    def _add_link(self, path: str, st: os.stat_result) -> bool:
        """Write ``path`` as a hardlink if an earlier path has its inode; remember it if not."""
        if st.st_nlink < 2:
            return False
        key = (st.st_dev, st.st_ino)
        first = self._links.setdefault(key, path)
        if first == path:
            return False
        info = self._info(path, tarfile.LNKTYPE, st, {})
        info.linkname = first
        self._tar.addfile(info)
        return True

    def _add_marker(self, name: str, st: os.stat_result) -> None:
        info = tarfile.TarInfo(name)
        info.mode = 0
        info.mtime = st.st_mtime_ns // 1_000_000_000
        self._tar.addfile(info)

    @staticmethod
    def _info(name: str, type_: bytes, st: os.stat_result,
              xattrs: dict[str, bytes]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type = type_
        info.mode = stat.S_IMODE(st.st_mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 1_000_000_000
        info.pax_headers = {
            # The tar is written with surrogateescape, which turns this back into the bytes.
            _XATTR_PAX_PREFIX + key: value.decode("utf-8", "surrogateescape")
            for key, value in sorted(xattrs.items()) if not key.startswith("trusted.")
        }
        return info


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
        # Every merged directory in the order it was filled, each after its parent.
        dirs: list[tuple[str, os.stat_result]] = []
        pending = [("", os.fstat(self._layer_fd))]
        while pending:
            path, st = pending.pop()
            dirs.append((path, st))
            self._merge_dir(path, pending)
        # Last, so that creating entries cannot move a directory's mtime, and deepest first.
        for path, st in reversed(dirs):
            try:
                self._finish_dir(path, st)
            except OSError as e:
                raise OSError(e.errno, f"{self._layer / path}: {e.strerror}") from e

    def _open_dirs(self, path: str) -> tuple[int, int]:
        src_fd = open_in_root(self._layer_fd, path or ".", _DIR)
        try:
            return src_fd, open_in_root(self._target_fd, path or ".", _DIR)
        except BaseException:
            os.close(src_fd)
            raise

    def _merge_dir(self, path: str, pending: list[tuple[str, os.stat_result]]) -> None:
        """Merge the entries of layer directory ``path``; queue its subdirectories."""
        src_fd, dst_fd = self._open_dirs(path)
        try:
            with os.scandir(src_fd) as listing:
                entries = sorted((entry.name, entry.stat(follow_symlinks=False))
                                 for entry in listing)
            for name, st in entries:
                child = _join(path, name)
                try:
                    if self._merge_entry(src_fd, dst_fd, name, child, st):
                        pending.append((child, st))
                except OSError as e:
                    raise OSError(e.errno, f"{self._layer / child}: {e.strerror}") from e
        finally:
            os.close(src_fd)
            os.close(dst_fd)

    def _merge_entry(self, src_fd: int, dst_fd: int, name: str, path: str,
                     st: os.stat_result) -> bool:
        """Merge one entry; True for a directory whose entries are still to be merged."""
        if is_whiteout(st):
            _remove(dst_fd, name)
            return False
        if stat.S_ISDIR(st.st_mode):
            there = _lstat(dst_fd, name)
            # The layer root is never opaque to the kernel; it is not an entry, so not seen here.
            opaque = _xattr(f"/proc/self/fd/{src_fd}/{name}", OPAQUE_XATTR) == b"y"
            if there is None or not stat.S_ISDIR(there.st_mode) or opaque:
                _remove(dst_fd, name)
                os.mkdir(name, 0o700, dir_fd=dst_fd)
            return True
        _remove(dst_fd, name)
        if st.st_nlink > 1:
            first = self._links.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                parent, _, first_name = first.rpartition("/")
                first_dir_fd = open_in_root(self._target_fd, parent or ".", _DIR)
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
        _check_supported(names, self._layer / path)
        source_names: list[str] | None = None
        for key in names:
            if key in _ACL_XATTRS:
                if source_names is None:
                    source_names = os.listxattr(f"/proc/self/fd/{src_fd}/{name}",
                                                follow_symlinks=False)
                if key in source_names:
                    continue
            elif not key.startswith(_OVERLAY_PREFIX):
                continue
            os.removexattr(copy, key, follow_symlinks=False)

    def _finish_dir(self, path: str, st: os.stat_result) -> None:
        """Give the merged directory ``path`` the owner, xattrs, mode and times of the layer's."""
        src_fd, dst_fd = self._open_dirs(path)
        try:
            wanted = _read_xattrs(src_fd, self._layer / path)
            os.fchown(dst_fd, st.st_uid, st.st_gid)  # first: chown clears setgid
            for key in os.listxattr(dst_fd):
                if key not in wanted or key.startswith(_OVERLAY_PREFIX):
                    os.removexattr(dst_fd, key)
            for key, value in wanted.items():
                if not key.startswith(_OVERLAY_PREFIX):
                    os.setxattr(dst_fd, key, value)
            os.fchmod(dst_fd, stat.S_IMODE(st.st_mode))
            os.utime(dst_fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(src_fd)
            os.close(dst_fd)


def _join(parent: str, name: str) -> str:
    """``name`` under ``parent``, a path relative to the layer root ("" being the root)."""
    return f"{parent}/{name}" if parent else name


def _check_supported(names: list[str], path: Path) -> None:
    for key in names:
        if key in _UNSUPPORTED_XATTRS:
            raise PydockError(f"{path}: overlay metadata {key} is not supported "
                              "(a layer must not depend on the layers below it)")


def _read_xattrs(source: int | str, path: Path) -> dict[str, bytes]:
    """All xattrs of an open fd, or of a /proc/self/fd path itself (a symlink is not followed).

    ``path`` names the entry in errors."""
    follow = isinstance(source, int)  # os refuses follow_symlinks=False with an fd
    names = os.listxattr(source, follow_symlinks=follow)
    _check_supported(names, path)
    return {name: os.getxattr(source, name, follow_symlinks=follow) for name in names}


def _xattr(source: int | str, name: str) -> bytes | None:
    """One xattr of an open fd or a /proc/self/fd path itself; None if it is not set."""
    try:
        return os.getxattr(source, name, follow_symlinks=isinstance(source, int))
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def _lstat(dir_fd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(dir_fd: int, name: str) -> None:
    """Remove ``name`` in ``dir_fd`` if there is anything, never following a symlink."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        # The fd-based rmtree: it never follows a symlink inside the tree it removes.
        shutil.rmtree(name, dir_fd=dir_fd)
