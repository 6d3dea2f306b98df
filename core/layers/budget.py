"""Budgets for reading untrusted tar archives, so that a small file cannot take the machine.

A few bytes of archive can claim gigabytes: a compressed stream of zeros, a PAX header whose
size field says 1 GiB (tarfile reads an extended header whole, into memory), a GNU sparse
member whose holes would be written out as zeros, millions of empty members. Each of these
is refused here with one line, before the bytes it claims are read or written:

* every extended header (PAX ``x``/``g``, GNU long name ``L`` and long link ``K``) is at most
  :data:`MAX_HEADER` bytes, checked on its 512-byte header block before tarfile reads the
  payload (:class:`BudgetedTarInfo`), and so is every sparse map;
* an archive has at most :data:`MAX_MEMBERS` members;
* after the end-of-archive marker, at most :data:`MAX_PADDING` bytes may follow: a stream
  that decompresses to far more than its members declare is a bomb, not padding;
* everything decompressed for one command is at most :func:`expansion_ratio` times the
  compressed bytes it came from (:class:`ExpansionBudget`), or :data:`EXPANSION_FLOOR`
  when that is more, so small archives of very compressible files always work.

Sparse members are written sparse (:mod:`.unpack`), and only their data is in the stream,
so only their data is charged.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import IO, Any, cast

from pydock.core.errors import PydockError

MAX_HEADER = 1 << 20
"""The largest PAX or GNU long-name/long-link header. Real ones hold a path, a link target and
a few xattrs (a file capability, an SELinux label): a few kilobytes at most."""

MAX_MEMBERS = 1_000_000
"""The most members one archive may have; the largest real layers have a few hundred
thousand, and each member costs memory (its TarInfo, a directory's deferred metadata)."""

MAX_PADDING = 1 << 20
"""How many bytes may follow the end-of-archive marker. tar pads to its 10 KiB record and
some writers to more, never to a megabyte."""

EXPANSION_ENV = "PYDOCK_MAX_EXPANSION"
"""Overrides :data:`DEFAULT_EXPANSION`: a ratio, or ``0`` for no limit."""

DEFAULT_EXPANSION = 100
"""Image layers compress 2 to 10 times; a gzip of zeros 1000 times, bzip2 and xz far more."""

EXPANSION_FLOOR = 16 << 20
"""Decompressed bytes always allowed, whatever the ratio: small archives of compressible
files are not bombs, and this is far below any disk an image store lives on."""

# The header types whose payload tarfile reads whole, into memory.
_EXTENDED_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                   tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)


class BudgetedTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses an oversized extended header from its header block alone.

    Passed as ``tarinfo=`` to :func:`tarfile.open`, it is what tarfile builds every header
    with, including the one after each extended header, so each one in a chain is checked.
    """

    def _proc_member(self, tarfile: Any) -> Any:  # tarfile's own hook for subclasses
        if self.type in _EXTENDED_TYPES and not 0 <= self.size <= MAX_HEADER:
            raise PydockError(f"cannot read tar archive: a {self.size}-byte extended header at "
                              f"byte {self.offset}, more than the {MAX_HEADER} allowed")
        return super()._proc_member(tarfile)  # type: ignore[misc]

    # A sparse map is a list in memory, several times the size of its text: GNU's old format
    # chains map blocks after the header, format 1.0 puts the map in the data, both as long
    # as the stream goes on. Each map may take at most MAX_HEADER bytes of the stream.

    def _proc_sparse(self, tarfile: Any) -> Any:
        return super()._proc_sparse(_MapReading(tarfile))  # type: ignore[misc]

    def _proc_gnusparse_10(self, next: Any, pax_headers: Any, tarfile: Any) -> Any:
        return super()._proc_gnusparse_10(  # type: ignore[misc]
            next, pax_headers, _MapReading(tarfile))


class _MapReading:
    """A TarFile as a sparse map's parser sees it: its stream may give at most
    :data:`MAX_HEADER` bytes; everything else is the TarFile's own."""

    def __init__(self, tar: Any) -> None:
        object.__setattr__(self, "_tar", tar)
        object.__setattr__(self, "fileobj", _CappedStream(tar.fileobj))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tar, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._tar, name, value)  # tarfile.offset, past the member


class _CappedStream:
    """A tar stream of which at most :data:`MAX_HEADER` bytes more may be read."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._left = MAX_HEADER

    def read(self, size: int) -> bytes:
        self._left -= size
        if self._left < 0:
            raise PydockError(f"cannot read tar archive: a sparse map of more than "
                              f"{MAX_HEADER} bytes")
        data: bytes = self._stream.read(size)
        return data

    def tell(self) -> int:
        position: int = self._stream.tell()
        return position


def count_member(number: int) -> None:
    """Refuse the archive once its ``number``-th member (from 0) is past :data:`MAX_MEMBERS`."""
    if number >= MAX_MEMBERS:
        raise PydockError(f"cannot read tar archive: more than {MAX_MEMBERS} members")


def check_padding(padding: int, what: str = "cannot read tar archive") -> None:
    """Refuse ``padding`` bytes after the end-of-archive marker if they are too many;
    ``what`` starts the message."""
    if padding > MAX_PADDING:
        raise PydockError(f"{what}: more than {MAX_PADDING} bytes after its end, far more "
                          "than its members declare")


def expansion_ratio() -> int:
    """The expansion ratio allowed: :data:`EXPANSION_ENV`, else :data:`DEFAULT_EXPANSION`;
    0 means no limit."""
    text = os.environ.get(EXPANSION_ENV, "")
    if not text:
        return DEFAULT_EXPANSION
    if not (text.isascii() and text.isdigit()):
        raise PydockError(f"{EXPANSION_ENV}={text!r}: expected a whole number (0: no limit)")
    return int(text)


class ExpansionBudget:
    """What one command may decompress: :func:`expansion_ratio` times its compressed input.

    Nested compression (a gzip'd archive of gzip'd layers) is charged to one budget, against
    the outer file's size only, so that a bomb cannot multiply ratios.
    """

    def __init__(self) -> None:
        self._ratio = expansion_ratio()
        self._input = 0
        self._output = 0

    def add_input(self, size: int) -> None:
        """Count ``size`` compressed bytes that came from the user's file."""
        self._input += size

    def charge(self, size: int, what: str) -> None:
        """Count ``size`` decompressed bytes of ``what``; refuse them past the budget."""
        self._output += size
        allowed = max(EXPANSION_FLOOR, self._ratio * self._input)
        if self._ratio and self._output > allowed:
            raise PydockError(f"{what}: decompresses to more than {allowed} bytes, "
                              f"{self._ratio} times its compressed size "
                              f"(set {EXPANSION_ENV} to allow more, 0 for no limit)")

    def reader(self, stream: IO[bytes], what: str) -> IO[bytes]:
        """``stream``, a decompressor, charging what is read from it to this budget."""
        return cast(IO[bytes], _ChargedReader(stream, self, what))


class _ChargedReader(io.RawIOBase):
    """A decompressor's output, charged to a budget as it is read. Closing it closes it."""

    def __init__(self, stream: IO[bytes], budget: ExpansionBudget, what: str) -> None:
        super().__init__()
        self._stream = stream
        self._budget = budget
        self._what = what

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._stream.fileno()  # the compressed file's, for progress

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        self._budget.charge(len(data), self._what)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()
