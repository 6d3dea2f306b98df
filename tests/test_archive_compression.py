"""Tests for pydock.core.layers.compression and unpack: what reaches the extractor.

The digest covers the whole uncompressed stream; compression is detected by content
(gzip, xz, bzip2 or none); unsupported, truncated and corrupt archives are refused on
one line.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from pydock.core.errors import PydockError
from pydock.core.layers.compression import open_tarball
from pydock.core.layers.unpack import extract_tar
from pydock.testing.tar import dir_, reg, tar_bytes

pytestmark = pytest.mark.quick


@pytest.mark.needs_root
def test_sha256_covers_the_whole_stream(dest: Path) -> None:
    data = tar_bytes([reg("f", b"x" * 1000)]) + bytes(3 * 512)
    assert extract_tar(io.BytesIO(data), dest) == hashlib.sha256(data).hexdigest()


def test_empty_archive(tmp_path: Path, dest: Path) -> None:
    data = bytes(1024)  # what an empty layer is
    path = tmp_path / "empty.tar"
    path.write_bytes(gzip.compress(data))
    with open_tarball(path) as stream:
        assert extract_tar(stream, dest) == hashlib.sha256(data).hexdigest()
    assert list(dest.iterdir()) == []


@pytest.mark.needs_root
@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress, lambda d: d])
def test_open_tarball_detects_compression_by_content(
    tmp_path: Path, dest: Path, compress: Callable[[bytes], bytes]
) -> None:
    data = tar_bytes([dir_("etc"), reg("etc/hostname", b"box\n")])
    path = tmp_path / "layer.tar.zst"  # the name is deliberately wrong
    path.write_bytes(compress(data))
    with open_tarball(path) as stream:
        assert extract_tar(stream, dest) == hashlib.sha256(data).hexdigest()
    assert (dest / "etc/hostname").read_bytes() == b"box\n"


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"\x28\xb5\x2f\xfd" + bytes(100), "zstd-compressed archives are not supported"),
        (b"", "empty file"),
        (os.urandom(4096), "not a tar archive"),
        (gzip.compress(b"plain text, not a tar" * 100), "not a tar archive"),
        (b"\x1f\x8b\x08\x00garbage", "ended before the end-of-stream marker"),
        (b"BZh9garbage", "Invalid data stream"),
    ],
    ids=["zstd", "empty", "random", "gzip-not-tar", "bad-gzip", "bad-bzip2"],
)
def test_open_tarball_refuses(tmp_path: Path, contents: bytes, message: str) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(contents)
    with pytest.raises(PydockError, match=message) as excinfo:
        open_tarball(path)
    assert str(excinfo.value).startswith(f"{path}: ")
    assert "\n" not in str(excinfo.value)


def test_open_tarball_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PydockError, match="No such file"):
        open_tarball(tmp_path / "nope.tar")


def test_truncated_compressed_layer(tmp_path: Path, dest: Path) -> None:
    compressed = gzip.compress(tar_bytes([reg("f", os.urandom(100_000))]))
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with open_tarball(path) as stream, pytest.raises(PydockError, match="'f': Compressed file"):
        extract_tar(stream, dest)


def _two_members() -> bytes:
    return tar_bytes([reg("a", b"a" * 700), reg("b", b"b" * 100)])


def _pax_header_chain() -> bytes:
    """Thousands of PAX extended headers in a row, which tarfile reads by recursion."""
    member = tar_bytes([reg("f", pax_headers={"comment": "x"})])
    return member[:1024] * 3000 + member


@pytest.mark.parametrize(
    "data",
    [
        _two_members()[:1000],  # inside a's contents
        _two_members()[:1536],  # after a, half-way into b's header block
        _two_members()[: 1536 + 512 + 512],  # after b, without the end-of-archive marker
        _two_members()[:1536] + os.urandom(512) + bytes(1024),  # b's header garbled
        _two_members() + b"trailing garbage",
        os.urandom(10240),
        b"",
        b"\0" * 100,
        _pax_header_chain(),
    ],
    ids=[
        "mid-data",
        "mid-header",
        "no-end-marker",
        "garbled-header",
        "trailing-garbage",
        "random",
        "empty",
        "short",
        "pax-header-chain",
    ],
)
def test_corrupt_archive_is_refused(dest: Path, data: bytes) -> None:
    with pytest.raises(PydockError) as excinfo:
        extract_tar(io.BytesIO(data), dest)
    assert "\n" not in str(excinfo.value)
