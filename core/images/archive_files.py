"""The files of an image archive to load: a directory, or a tar read in place.

Everything in an archive is untrusted, so every path it names is made canonical and must
stay inside it (:func:`archive_path`), symlinks and hardlinks included, and nothing is read
through a symlink out of a directory. A compressed tar is decompressed once to an unnamed
temporary file, so that its members can then be read in place like those of a plain one
(``docker save`` writes manifest.json last, so the archive cannot be read in one pass). That
copy is made as its headers are read, within the budgets of :mod:`pydock.core.layers.budget`:
each member must fit in the store's free space before its data is copied, the copy stops at
the end-of-archive marker, and a stream of zeros after it is refused, not written out.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

from pydock.core import storage_root
from pydock.core.errors import PydockError
from pydock.core.files import scratch_file
from pydock.core.images.store import ImageStore
from pydock.core.layers.budget import BudgetedTarInfo, ExpansionBudget, check_padding
from pydock.core.layers.compression import READ_ERRORS, open_tarball
from pydock.core.progress import ProgressReader

# Manifests, indexes and configs are small; anything bigger is not an image document.
_JSON_LIMIT = 8 << 20
_MAX_MEMBERS = 100_000
_MAX_LINKS = 16
_CHUNK = 1 << 20


@contextlib.contextmanager
def open_archive(store: ImageStore, source: Path,
                 budget: ExpansionBudget) -> Iterator[ArchiveFiles]:
    """The files of ``source``, a directory or a tar (plain, or compressed as
    :func:`pydock.core.layers.compression.open_tarball` knows, its decompression charged to
    ``budget``), for the time of the ``with``."""
    with contextlib.ExitStack() as stack:
        if source.is_dir():
            directory = _DirectoryFiles(source)
            stack.callback(directory.close)
            yield directory
            return
        stream = stack.enter_context(open_tarball(source, budget))
        # open_tarball gives the file itself when it is not compressed, else a decompressor.
        if isinstance(stream, io.BufferedReader):
            yield _TarFiles(stream, source, _members(stream, source, stream=False))
            return
        # A compressed archive cannot be read in place: unpack it once to an unnamed
        # temporary file on the store's filesystem (not a tmpfs, which would fill memory).
        storage_root.ensure(store.root)
        plain = stack.enter_context(scratch_file(store.layers_dir))
        try:
            with ProgressReader(stream, f"decompressing {source.name}") as progress:
                copy = _CopyingReader(cast(IO[bytes], progress), plain, source)
                members = _members(cast(IO[bytes], copy), source, stream=True)
                while copy.read(_CHUNK):
                    check_padding(copy.size - copy.end, f"{source}: cannot read tar archive")
            plain.flush()  # members are read through the descriptor
        except READ_ERRORS as e:
            raise PydockError(f"{source}: cannot decompress: {e}") from None
        yield _TarFiles(plain, source, members, decompressed=True)


def archive_path(value: object, what: str) -> str:
    """``value``, a path inside the archive, made canonical; never absolute or climbing out."""
    if not isinstance(value, str) or not value.strip("/."):
        raise PydockError(f"{what}: invalid path {value!r}")
    if value.startswith("/"):
        raise PydockError(f"{what}: absolute path {value!r} is not allowed in an archive")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts or "\0" in value:
        raise PydockError(f"{what}: path {value!r} leaves the archive")
    return "/".join(parts)


def parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise PydockError(f"{what}: invalid JSON ({e})") from None


class ArchiveFiles:
    """Files of an archive, by canonical path; symlinks stay inside it."""

    decompressed = False
    """Whether the files are the output of a decompressor, not bytes the user gave."""

    def exists(self, path: str) -> bool:
        try:
            self.open(path)[0].close()
        except PydockError:
            return False
        return True

    def open(self, path: str) -> tuple[BinaryIO, int]:
        """A stream of regular file ``path`` with a real descriptor (for progress), its size."""
        raise NotImplementedError

    def read_bytes(self, path: str) -> bytes:
        stream, size = self.open(path)
        with stream:
            if size > _JSON_LIMIT:
                raise PydockError(f"{path}: {size} bytes is too large for an image document")
            return stream.read(_JSON_LIMIT)

    def read_json(self, path: str) -> Any:
        return parse_json(self.read_bytes(path), path)


class _DirectoryFiles(ArchiveFiles):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def open(self, path: str) -> tuple[BinaryIO, int]:
        from pydock.core.syscalls import open_in_root

        try:
            # O_NONBLOCK: a fifo planted in the layout must not hang the open.
            fd = open_in_root(self._fd, path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            raise PydockError(f"{self._root}: cannot open {path}: {e.strerror}") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise PydockError(f"{self._root}: {path} is not a regular file")
        return os.fdopen(fd, "rb"), st.st_size

    def close(self) -> None:
        os.close(self._fd)


def _members(file: IO[bytes], label: Path, stream: bool) -> dict[str, tarfile.TarInfo]:
    """The members of the tar ``file`` by canonical path, read in place or, for a
    :class:`_CopyingReader` (whose ``end`` it sets), as a ``stream``."""
    members: dict[str, tarfile.TarInfo] = {}
    try:
        with (tarfile.open(fileobj=file, mode="r|", tarinfo=BudgetedTarInfo) if stream else
              tarfile.open(fileobj=file, mode="r:", tarinfo=BudgetedTarInfo)) as tar:
            for number, member in enumerate(tar):
                if number >= _MAX_MEMBERS:
                    raise PydockError(f"{label}: more than {_MAX_MEMBERS} files")
                if isinstance(file, _CopyingReader):
                    file.check_fits(member, label)
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                members["/".join(parts)] = member
            if isinstance(file, _CopyingReader):
                file.end = tar.offset
    except READ_ERRORS as e:
        raise PydockError(f"{label}: cannot read tar archive: {e}") from None
    return members


class _CopyingReader(io.RawIOBase):
    """A decompressed archive, written to ``copy`` as tarfile reads it, so that the copy
    holds exactly the bytes tarfile's offsets count. ``end`` is where the archive ends."""

    def __init__(self, stream: IO[bytes], copy: IO[bytes], label: Path) -> None:
        super().__init__()
        self._stream = stream
        self._copy = copy
        self._label = label
        self.size = 0
        self.end = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._stream.read(size)
        except READ_ERRORS as e:  # the decompressor's, told apart from the tar's own
            raise PydockError(f"{self._label}: cannot decompress: {e}") from None
        self._copy.write(data)
        self.size += len(data)
        return data

    def check_fits(self, member: tarfile.TarInfo, label: Path) -> None:
        """Refuse ``member`` before its data is copied if the store cannot hold it: a
        compressed archive can claim any size, and its data would be written out whole."""
        fs = os.fstatvfs(self._copy.fileno())
        free = fs.f_bavail * fs.f_frsize
        if member.size > free:
            raise PydockError(f"{label}: {member.name!r} claims {member.size} bytes, more than "
                              f"the {free} free in the store")


class _TarFiles(ArchiveFiles):
    """An uncompressed tar file, read in place: members are slices of the file."""

    def __init__(self, file: BinaryIO, label: Path, members: dict[str, tarfile.TarInfo],
                 decompressed: bool = False) -> None:
        self._file = file
        self._label = label
        self._members = members
        self.decompressed = decompressed

    def open(self, path: str) -> tuple[BinaryIO, int]:
        member = self._regular_member(path)
        raw = _Slice(self._file.fileno(), member.offset_data, member.size)
        return cast(BinaryIO, io.BufferedReader(raw, _CHUNK)), member.size

    def _regular_member(self, path: str) -> tarfile.TarInfo:
        for _ in range(_MAX_LINKS):
            member = self._members.get(path)
            if member is None:
                raise PydockError(f"{self._label}: no {path} in the archive")
            if member.issym():
                target = posixpath.normpath(posixpath.join(posixpath.dirname(path),
                                                           member.linkname))
                path = archive_path(target, f"{self._label}: symlink {path}")
            elif member.islnk():
                path = archive_path(member.linkname, f"{self._label}: hardlink {path}")
            elif member.isreg() and not member.sparse:
                return member
            else:
                raise PydockError(f"{self._label}: {path} is not a regular file")
        raise PydockError(f"{self._label}: too many levels of links at {path}")


class _Slice(io.RawIOBase):
    """``size`` bytes of descriptor ``fd`` from ``offset``, read by moving the descriptor's
    own position so that a ProgressReader on it shows how far into the archive we are."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        super().__init__()
        self._fd = fd
        self._offset = offset
        self._size = size
        self._position = 0

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        wanted = min(len(buffer), self._size - self._position)
        if wanted <= 0:
            return 0
        os.lseek(self._fd, self._offset + self._position, os.SEEK_SET)
        data = os.read(self._fd, wanted)
        if not data:
            raise PydockError("the archive is truncated")
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)


