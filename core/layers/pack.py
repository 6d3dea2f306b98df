"""A layer directory written out as an OCI layer tar: ``image save`` and ``commit``.

Every layer in the store is a directory in the kernel's overlay format
(:mod:`pydock.core.layers.format`), and so is an overlay upper directory. :func:`write_layer_tar`
turns such a directory back into an OCI layer tar, overlay whiteouts and opaque directories
into ``.wh.`` entries, the reverse of :mod:`pydock.core.layers.unpack`. The output is
deterministic, so the same tree always gets the same diff_id.

The directory is read without following anything in it, by descriptors
(:class:`pydock.core.files.TreeWalk`): each entry is opened ``O_NOFOLLOW`` relative to its
directory's, so a tree of any depth is written.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

from pydock.core.files import TreeWalk
from pydock.core.layers.format import (
    NODE_TAR_TYPES,
    OPAQUE_MARKER,
    PAX_XATTR_PREFIX,
    WHITEOUT_PREFIX,
    is_opaque,
    is_whiteout,
    join,
    layer_xattrs,
)

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: should a regular file be swapped for a fifo under us, fail instead of hanging.
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOATIME | os.O_NONBLOCK


def write_layer_tar(out: BinaryIO, layer: Path, skip: Collection[str] = ()) -> str:
    """Write the overlay-format directory ``layer`` to ``out`` as an OCI layer tar.

    Returns the hex sha256 of the bytes written, the layer's diff_id. The same tree always
    gives the same bytes: a depth-first walk with each directory's entries sorted by their
    name in the tar (bytes), PAX format, numeric owners only, mtimes in whole seconds (rounded
    down) and no atime or ctime. A whiteout becomes an empty ``.wh.NAME`` (mode 0, owner 0:0);
    an opaque directory is followed by an empty ``DIR/.wh..wh..opq``. Hardlinked paths after
    the first become hardlink entries to it; sockets are left out, as are trusted.* xattrs
    (other xattrs go in SCHILY.xattr records). The layer root itself has no entry.

    Raises :class:`PydockError` for overlay metadata that has no OCI form (redirects,
    metacopy), and :class:`OSError` if the layer cannot be read. The absolute paths in
    ``skip`` (a directory with all it holds) are left out.
    """
    writer = _HashingWriter(out)
    root_fd = os.open(layer, _DIR)
    try:
        with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT,
                          encoding="utf-8", errors="surrogateescape") as tar:
            _LayerTarWriter(tar, root_fd, layer, skip).write()
    finally:
        os.close(root_fd)
    return writer.sha256.hexdigest()


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


class _LayerTarWriter:
    """One walk of a layer into a tar: the walk's order and the hardlinks seen so far."""

    def __init__(self, tar: tarfile.TarFile, root_fd: int, layer: Path,
                 skip: Collection[str] = ()) -> None:
        self._tar = tar
        self._skip = {path.strip("/") for path in skip}
        self._root_fd = root_fd
        self._layer = layer
        # (st_dev, st_ino) of an inode with several links -> the first path written for it.
        self._links: dict[tuple[int, int], str] = {}

    def write(self) -> None:
        self._add_opaque_marker(self._root_fd, "")
        walk = TreeWalk(self._root_fd, sort_key=_tar_order)
        # The path of the directory at each depth of the walk, "" for the root.
        paths = [""]
        for entry in walk:
            if entry.leaving or entry.st is None:
                continue
            parent = paths[walk.depth]
            path = join(parent, entry.name)
            if path in self._skip:
                if entry.is_dir:
                    walk.skip()
                continue
            try:
                self._add(entry.dir_fd, parent, entry.name, entry.st)
            except OSError as e:
                raise OSError(e.errno, f"{self._layer / path}: {e.strerror}") from e
            # tarfile keeps every header it writes, for getmembers(): some 700 bytes an entry.
            self._tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
            if entry.is_dir:
                del paths[walk.depth + 1:]
                paths.append(path)

    def _add(self, parent_fd: int, parent: str, name: str, st: os.stat_result) -> None:
        """Write one entry; a directory's entries come next, from the walk."""
        path = join(parent, name)
        mode = st.st_mode
        if is_whiteout(st):
            self._add_marker(join(parent, WHITEOUT_PREFIX + name), st)
            return
        if stat.S_ISDIR(mode):
            fd = os.open(name, _DIR, dir_fd=parent_fd)
            try:
                self._tar.addfile(self._info(path, tarfile.DIRTYPE, st, self._xattrs(fd, path)))
                self._add_opaque_marker(fd, path)
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
            kind = NODE_TAR_TYPES[stat.S_IFMT(mode)]
            info = self._info(path, kind, st, self._xattrs(node, path))
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self._tar.addfile(info)

    def _add_opaque_marker(self, dir_fd: int, path: str) -> None:
        """Write the opaque marker of directory ``path`` if it has one."""
        # Written for the root too, although the kernel ignores it there: so that the tar
        # holds everything the layer does.
        if is_opaque(dir_fd):
            self._add_marker(join(path, OPAQUE_MARKER), os.fstat(dir_fd))

    def _xattrs(self, source: int | str, path: str) -> dict[str, bytes]:
        return layer_xattrs(source, self._layer / path)

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
            PAX_XATTR_PREFIX + key: value.decode("utf-8", "surrogateescape")
            for key, value in sorted(xattrs.items()) if not key.startswith("trusted.")
        }
        return info


def _tar_order(entry: tuple[str, os.stat_result | None]) -> bytes:
    """Sorts a directory's entries by the bytes of their names in the tar."""
    name, st = entry
    return os.fsencode(WHITEOUT_PREFIX + name if st is not None and is_whiteout(st) else name)
