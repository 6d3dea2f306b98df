"""Archive bombs: a few bytes of archive that claim gigabytes, written without ever holding
what they claim in memory.

``tests/test_archive_bombs.py`` feeds them to pydock; ``benchmarks/compare_bombs.py`` feeds
the same bombs to pydock, podman and docker side by side.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

from pydock.testing.tar import Member, reg, tar_bytes

MiB = 1 << 20


def gzip_file(path: Path, *parts: bytes | int) -> Path:
    """``path``, a gzip of ``parts``: bytes as they are, an int as that many zero bytes,
    written a mebibyte at a time so that no part is ever whole in memory."""
    with gzip.open(path, "wb", compresslevel=1) as file:
        for part in parts:
            for chunk in [part] if isinstance(part, bytes) else _zero_chunks(part):
                file.write(chunk)
    return path


def header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte tar header block of type ``kind`` saying ``size`` bytes follow."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    return info.tobuf(tarfile.USTAR_FORMAT)


def extended_header_bomb(path: Path, claimed: int) -> Path:
    """A gzip'd layer whose first member is a PAX header of ``claimed`` bytes (of zeros)."""
    return gzip_file(path, header("././@PaxHeader", tarfile.XHDTYPE, claimed), claimed,
                     tar_bytes([reg("after", b"x")]))


def sparse_member(name: str, claimed: int) -> Member:
    """A GNU sparse file (PAX format 0.1) of ``claimed`` bytes: 512 bytes of data at its
    start and at its end, holes in between."""
    return reg(name, b"x" * 1024, pax_headers={
        "GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.name": name,
        "GNU.sparse.size": str(claimed), "GNU.sparse.numblocks": "2",
        "GNU.sparse.map": f"0,512,{claimed - 512},512"})


def sparse_bomb(path: Path, claimed: int, members: int) -> Path:
    """A layer of ``members`` sparse files of ``claimed`` bytes each, a few KiB in all."""
    path.write_bytes(tar_bytes([sparse_member(f"sparse{n}", claimed)
                                for n in range(members)]))
    return path


def trailing_zeros_bomb(path: Path, zeros: int) -> Path:
    """A gzip'd layer of one small member followed by ``zeros`` zero bytes."""
    return gzip_file(path, tar_bytes([reg("f", b"x")]), zeros)


def many_members_bomb(path: Path, members: int) -> Path:
    """A gzip'd layer of ``members`` empty files (one header block each), streamed."""
    with gzip.open(path, "wb", compresslevel=6) as file:
        for n in range(members):
            file.write(header(f"f{n}", tarfile.REGTYPE, 0))
        file.write(bytes(1024))
    return path


def ratio_bomb(path: Path, zeros: int) -> Path:
    """A docker archive (``docker save``'s format) whose one gzip'd layer holds a file of
    ``zeros`` zero bytes: a compression ratio of about 1,000."""
    layer_path = path.with_name(path.name + ".layer.gz")
    start = header("zeros", tarfile.REGTYPE, zeros)
    end = bytes(-zeros % 512 + 1024)
    gzip_file(layer_path, start, zeros, end)
    diff_id = hashlib.sha256(start)
    for chunk in _zero_chunks(zeros):
        diff_id.update(chunk)
    diff_id.update(end)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers",
                                    "diff_ids": [f"sha256:{diff_id.hexdigest()}"]}}).encode()
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["bomb:ratio"],
                            "Layers": ["layer.tar"]}]).encode()
    path.write_bytes(tar_bytes([reg("layer.tar", layer_path.read_bytes()),
                                reg(config_name, config), reg("manifest.json", manifest)]))
    layer_path.unlink()
    return path


def _zero_chunks(size: int) -> Iterator[bytes]:
    for _ in range(size // MiB):
        yield bytes(MiB)
    yield bytes(size % MiB)


def outer_member_bomb(path: Path, size: int) -> Path:
    """A gzip'd image archive whose first member is ``size`` zero bytes named layer.tar."""
    return gzip_file(path, header("layer.tar", tarfile.REGTYPE, size), size,
                     bytes(-size % 512 + 1024))
