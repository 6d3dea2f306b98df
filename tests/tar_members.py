"""Build tar archives member by member, for tests that feed layers to pydock."""

from __future__ import annotations

import io
import tarfile

MTIME = 1_600_000_000

Member = tuple[tarfile.TarInfo, bytes | None]


def _info(name: str, type_: bytes, mode: int, **attrs: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = type_
    info.mode = mode
    info.mtime = MTIME
    for key, value in attrs.items():
        setattr(info, key, value)
    return info


def reg(name: str, data: bytes = b"", mode: int = 0o644, **attrs: object) -> Member:
    info = _info(name, tarfile.REGTYPE, mode, **attrs)
    info.size = len(data)
    return info, data


def dir_(name: str, mode: int = 0o755, **attrs: object) -> Member:
    return _info(name, tarfile.DIRTYPE, mode, **attrs), None


def sym(name: str, target: str, **attrs: object) -> Member:
    return _info(name, tarfile.SYMTYPE, 0o777, linkname=target, **attrs), None


def link(name: str, target: str, **attrs: object) -> Member:
    return _info(name, tarfile.LNKTYPE, 0o644, linkname=target, **attrs), None


def node(name: str, type_: bytes, mode: int, **attrs: object) -> Member:
    return _info(name, type_, mode, **attrs), None


def make_tar(members: list[Member], format: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()
