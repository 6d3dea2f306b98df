"""Build tar archives member by member: layers, rootfs tarballs and image archives for tests.

Every member is described in full (type, mode, owner, mtime, PAX headers), so that an archive
is the same bytes each time it is built::

    from pydock.testing.tar import dir_, reg, sym, whiteout, tar_bytes
    layer = tar_bytes([dir_("etc"), reg("etc/motd", b"hi\\n", 0o600), sym("bin/sh", "busybox"),
                       whiteout("etc/gone")])

:func:`tree` adds a directory of the host as it is; :func:`tar_bytes` and :func:`write_tar`
write members plain or gzip'd.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple, TypedDict, Unpack

MTIME = 1_600_000_000
WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


class Member(NamedTuple):
    info: tarfile.TarInfo
    data: bytes | None


class Meta(TypedDict, total=False):
    """What any member may set besides its type and mode; unset: root, MTIME, no PAX headers."""

    uid: int
    gid: int
    uname: str
    gname: str
    mtime: int
    pax_headers: dict[str, str]


def node(name: str, type_: bytes, mode: int, *, linkname: str = "", devmajor: int = 0,
         devminor: int = 0, **meta: Unpack[Meta]) -> Member:
    """A member of any type without content: devices, fifos, or a type pydock must refuse."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = type_, mode, meta.get("mtime", MTIME)
    info.uid, info.gid = meta.get("uid", 0), meta.get("gid", 0)
    info.uname, info.gname = meta.get("uname", ""), meta.get("gname", "")
    info.linkname, info.devmajor, info.devminor = linkname, devmajor, devminor
    info.pax_headers = dict(meta.get("pax_headers", {}))
    return Member(info, None)


def reg(name: str, data: bytes = b"", mode: int = 0o644, **meta: Unpack[Meta]) -> Member:
    info = node(name, tarfile.REGTYPE, mode, **meta).info
    info.size = len(data)
    return Member(info, data)


def dir_(name: str, mode: int = 0o755, **meta: Unpack[Meta]) -> Member:
    return node(name, tarfile.DIRTYPE, mode, **meta)


def sym(name: str, target: str, **meta: Unpack[Meta]) -> Member:
    return node(name, tarfile.SYMTYPE, 0o777, linkname=target, **meta)


def link(name: str, target: str, mode: int = 0o644, **meta: Unpack[Meta]) -> Member:
    """A hardlink: ``name`` is another name for the member ``target`` written before it."""
    return node(name, tarfile.LNKTYPE, mode, linkname=target, **meta)


def whiteout(path: str) -> Member:
    """The OCI whiteout deleting ``path`` of the layers below (``dir/.wh.name``)."""
    parent, _, name = path.rpartition("/")
    return reg(f"{parent}/{WHITEOUT_PREFIX}{name}" if parent else WHITEOUT_PREFIX + name)


def opaque(directory: str) -> Member:
    """The OCI marker hiding everything the layers below hold in ``directory``."""
    return reg(f"{directory}/{OPAQUE}")


def tree(root: Path, arcname: str = ".") -> list[Member]:
    """The directory ``root`` as members under ``arcname``, as ``tar -C root -c .`` has them."""
    with tarfile.open(fileobj=io.BytesIO(), mode="w") as scratch:
        members = []
        for path in [root, *sorted(root.rglob("*"))]:
            name = os.path.normpath(os.path.join(arcname, path.relative_to(root)))
            info = scratch.gettarinfo(path, arcname=name)
            members.append(Member(info, path.read_bytes() if info.isreg() else None))
    return members


def tar_bytes(members: Iterable[Member], *, compress: bool = False,
              format: int = tarfile.PAX_FORMAT) -> bytes:
    """The archive of ``members`` in order; gzip'd (with a fixed header time) if ``compress``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return gzip.compress(buffer.getvalue(), mtime=0) if compress else buffer.getvalue()


def write_tar(path: Path, members: Iterable[Member], *, compress: bool = False,
              format: int = tarfile.PAX_FORMAT) -> Path:
    path.write_bytes(tar_bytes(members, compress=compress, format=format))
    return path
