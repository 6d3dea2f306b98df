"""Recognising and opening compressed tars: by their first bytes, never by their file names.

``pydock import`` and ``image load`` take tarballs as users have them: plain, or compressed
with gzip, xz or bzip2, whatever the file is called. Layers inside an image archive are plain
or gzip, the two layer media types pydock supports in archives; zstd is recognised there only
to be refused by name, which says more than "not a tar archive" would. Layers pulled from a
registry may also be zstd (:func:`decompressed_layer`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pydock.core.errors import PydockError
from pydock.core.layers.budget import ExpansionBudget

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
BZIP2_MAGIC = b"BZh"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
# Enough of a file's start to tell all of the above apart.
_MAGIC_SIZE = max(len(GZIP_MAGIC), len(XZ_MAGIC), len(BZIP2_MAGIC), len(ZSTD_MAGIC))

READ_ERRORS = (
    tarfile.TarError,
    OSError,
    EOFError,
    ValueError,
    OverflowError,
    RecursionError,
    zlib.error,
    lzma.LZMAError,
)
"""Everything a corrupt or hostile archive can make the standard library raise while it is
read: tarfile lets ValueError and OverflowError out of some malformed headers, recursion
errors out of long chains of extended headers, the decompressors have exception types of
their own, and a truncated stream raises EOFError (which click would take for ^D)."""


def error_reason(error: BaseException) -> str:
    """What went wrong, for a message: an OSError's text without its number, else the
    exception's own text, else its type's name."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def open_tarball(path: Path, budget: ExpansionBudget | None = None) -> BinaryIO:
    """Open a tar file, transparently decompressing gzip, xz or bzip2.

    The compression is recognised by its magic bytes, not by the file name. Returns a
    readable binary stream of the uncompressed tar: the file itself (an
    :class:`io.BufferedReader`) when it is not compressed, else a decompressor charging
    ``budget``, a new one by default (a decompression bomb is refused while it is read).
    zstd, an empty file or anything that does not start with a tar header raises
    :class:`PydockError`.
    """
    try:
        with open(path, "rb") as file:
            magic = file.read(_MAGIC_SIZE)
    except OSError as e:
        raise PydockError(f"{path}: {error_reason(e)}") from e
    if not magic:
        raise PydockError(f"{path}: empty file")
    if magic.startswith(ZSTD_MAGIC):
        raise PydockError(f"{path}: zstd-compressed archives are not supported")
    stream = _open_decompressed(path, magic)
    try:
        header = stream.read(tarfile.BLOCKSIZE)
        stream.seek(0)
    except READ_ERRORS as e:
        stream.close()
        raise PydockError(f"{path}: {error_reason(e)}") from e
    if not _is_tar_header(header):
        stream.close()
        raise PydockError(f"{path}: not a tar archive")
    if isinstance(stream, io.BufferedReader):
        return stream
    budget = budget or ExpansionBudget()
    budget.add_input(path.stat().st_size)
    return cast(BinaryIO, budget.reader(stream, str(path)))


def gunzipped(stream: io.BufferedReader[Any], what: str, budget: ExpansionBudget) -> IO[bytes]:
    """``stream``, an image layer blob, as its uncompressed tar: itself when it is plain, a
    decompressor reading it when it is gzip, charging ``budget``. ``what`` names the layer in
    refusals."""
    magic = stream.peek(_MAGIC_SIZE)[:_MAGIC_SIZE]
    if magic.startswith(ZSTD_MAGIC):
        raise PydockError(f"{what}: zstd-compressed layers are not supported")
    if magic.startswith(GZIP_MAGIC):
        return budget.reader(cast(IO[bytes], gzip.GzipFile(fileobj=stream, mode="rb")), what)
    return stream


def decompressed_layer(stream: io.BufferedReader[Any], what: str,
                       budget: ExpansionBudget) -> IO[bytes]:
    """``stream``, a registry's layer blob, as its uncompressed tar: plain, gzip or zstd
    (recognised by their first bytes, whatever the media type claims), charging ``budget``.
    zstd needs the ``zstandard`` module, imported only when such a layer comes."""
    magic = stream.peek(_MAGIC_SIZE)[:_MAGIC_SIZE]
    if magic.startswith(ZSTD_MAGIC):
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
        return budget.reader(cast(IO[bytes], reader), what)
    return gunzipped(stream, what, budget)


def _open_decompressed(path: Path, magic: bytes) -> BinaryIO:
    if magic.startswith(GZIP_MAGIC):
        return cast(BinaryIO, gzip.open(path))
    if magic.startswith(XZ_MAGIC):
        return cast(BinaryIO, lzma.open(path))
    if magic.startswith(BZIP2_MAGIC):
        return cast(BinaryIO, bz2.open(path))
    return open(path, "rb")


def _is_tar_header(block: bytes) -> bool:
    if block == bytes(tarfile.BLOCKSIZE):
        return True  # the end-of-archive marker: an empty archive, a valid (empty) layer
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True
