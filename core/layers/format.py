"""The layer format's vocabulary, said once: overlay's format on disk, and its OCI tar form.

Every layer in the store is a directory in the kernel's overlay format, so the overlay driver
can mount the layers as they are, and every other driver merges them by the same rules
(:mod:`pydock.core.layers.flatten`). Two things in that format are not plain files:

* a **whiteout**, a character device 0/0 at a path, says that the path is deleted: nothing the
  layers below have there shows through;
* an **opaque directory**, one with the xattr ``trusted.overlay.opaque=y``, shows only its own
  entries: nothing the layers below have inside it shows through.

An OCI layer tar says the same with names instead (the image spec's "whiteouts"): an empty
file ``.wh.NAME`` beside ``NAME`` for a whiteout, and an empty ``DIR/.wh..wh..opq`` for an
opaque ``DIR``. :mod:`pydock.core.layers.unpack` converts the tar form into the overlay form on
import and :mod:`pydock.core.layers.pack` converts back on export.

Paths inside a layer are written relative to its root without a leading slash, ``""`` being
the root itself (:func:`join`).

This module imports only ``os`` and ``stat`` (no tarfile, no xattr package): the overlay
driver reads :data:`MAX_LAYERS` from it on the way to every ``pydock run``.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from pydock.core.errors import PydockError

OVERLAY_XATTR_PREFIX = "trusted.overlay."
"""The namespace of overlay's own metadata. A mount does not show these xattrs, a saved layer
tar does not carry them, and an imported one may not set them (a forged redirect could point a
directory anywhere in the lower layers)."""

OPAQUE_XATTR = OVERLAY_XATTR_PREFIX + "opaque"
"""Set to :data:`OPAQUE_VALUE` on a directory that hides everything below it. (Rootless
overlay with ``userxattr`` reads ``user.overlay.opaque`` instead; pydock runs as root.)"""

OPAQUE_VALUE = b"y"
"""The value of :data:`OPAQUE_XATTR` that makes a directory opaque; the kernel ignores others."""

DEPENDENT_XATTRS = (OVERLAY_XATTR_PREFIX + "redirect", OVERLAY_XATTR_PREFIX + "metacopy")
"""Overlay metadata that makes an upper directory depend on its lower layers (a renamed
directory that still points at its old lower path; a file whose data was never copied up).
Such a tree is not a self-contained layer and has no OCI form; pydock's overlay mounts never
enable either feature, so finding one means the tree was made elsewhere."""

WHITEOUT_PREFIX = ".wh."
"""An OCI tar entry ``.wh.NAME`` deletes ``NAME``. The prefix is reserved: a name that starts
with it is always a marker, never a file of the image, so ``.wh.``, ``.wh..`` and ``.wh...``
are invalid, and so is every ``.wh..wh.*`` but :data:`OPAQUE_MARKER`."""

OPAQUE_MARKER = WHITEOUT_PREFIX + WHITEOUT_PREFIX + ".opq"
"""An OCI tar entry ``DIR/.wh..wh..opq`` makes ``DIR`` opaque."""

PAX_XATTR_PREFIX = "SCHILY.xattr."
"""A PAX header ``SCHILY.xattr.KEY`` carries the xattr ``KEY`` of its entry (the form GNU tar,
docker and containerd write), its value the xattr's bytes."""

NODE_TAR_TYPES = {stat.S_IFCHR: b"3", stat.S_IFBLK: b"4", stat.S_IFIFO: b"6"}
"""The file type of a device node or fifo (``stat.S_IFMT``) -> its tar typeflag
(``tarfile.CHRTYPE``, ``BLKTYPE``, ``FIFOTYPE``; POSIX ustar's values, spelled out here so
that this module does not import tarfile). Sockets have none: a tar leaves them out."""

MAX_LAYERS = 500
"""The most layers an image may have: the kernel's own cap on overlay's lower directories
(``OVL_MAX_STACK``). No runnable image has more, so a longer chain is refused on load."""


def is_whiteout(st: os.stat_result) -> bool:
    """Whether ``st`` (an lstat result) is an overlay whiteout: a character device 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def make_whiteout(name: str, dir_fd: int) -> None:
    """Create the whiteout ``name`` in directory ``dir_fd`` (which must not have it yet)."""
    os.mknod(name, stat.S_IFCHR, os.makedev(0, 0), dir_fd=dir_fd)


def is_opaque(source: int | str) -> bool:
    """Whether a directory is opaque: an open descriptor of it, or a path (typically a
    ``/proc/self/fd`` one) that is not followed if it is a symlink.

    Raises :class:`OSError` if its xattrs cannot be read at all.
    """
    return read_xattr(source, OPAQUE_XATTR) == OPAQUE_VALUE


def read_xattr(source: int | str, name: str) -> bytes | None:
    """One xattr of an open descriptor, or of a path itself (a symlink is not followed);
    None if it is not set."""
    try:
        # os refuses follow_symlinks=False with a descriptor, which it never follows anyway.
        return os.getxattr(source, name, follow_symlinks=isinstance(source, int))
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def layer_xattrs(source: int | str, path: Path) -> dict[str, bytes]:
    """All xattrs of a layer entry: an open descriptor, or a path itself (a symlink is not
    followed). ``path`` names the entry in errors.

    Raises :class:`PydockError` for :data:`DEPENDENT_XATTRS`, which no layer may carry.
    """
    follow = isinstance(source, int)  # os refuses follow_symlinks=False with a descriptor
    names = os.listxattr(source, follow_symlinks=follow)
    check_self_contained(names, path)
    return {name: os.getxattr(source, name, follow_symlinks=follow) for name in names}


def check_self_contained(xattr_names: list[str], path: Path) -> None:
    """Refuse the entry ``path``, whose xattrs are ``xattr_names``, if one of them is in
    :data:`DEPENDENT_XATTRS`."""
    for key in xattr_names:
        if key in DEPENDENT_XATTRS:
            raise PydockError(f"{path}: overlay metadata {key} is not supported "
                              "(a layer must not depend on the layers below it)")


def join(parent: str, name: str) -> str:
    """``name`` under ``parent``, a path relative to the layer root (``""`` being the root)."""
    return f"{parent}/{name}" if parent else name
