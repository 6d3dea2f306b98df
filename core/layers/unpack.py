"""Unpack an image layer (a tar stream) into a directory without letting it reach outside.

A layer is untrusted input: anyone can publish an image. Extracting it with ordinary path
operations, as ``tarfile.extractall`` does, lets the archive write anywhere the runtime
(root) can, through a handful of well-known escape classes:

* names that climb out of the layer: ``../../etc/cron.d/x`` or absolute ``/etc/x``;
* symlinks planted by the archive and then written through, whether they point outside
  directly (``l -> /etc`` then ``l/passwd``), by ``..`` chains (``l -> ../../..``), via a
  loop, or replace a directory that a later member is written into;
* hardlinks to files outside the layer (``x`` linked to ``/etc/shadow``), directly or
  through such a symlink, which the archive could then overwrite in place;
* a later member replacing an earlier one, where the removal of what is there follows a
  symlink and deletes outside the layer.

Every path is therefore resolved by the kernel with openat2(RESOLVE_IN_ROOT) relative to a
descriptor of the layer directory (:func:`pydock.core.syscalls.open_in_root`), so ``..`` and
symlinks, absolute or not, can never leave it; the last component of every member is then
created with the ``*at`` system calls relative to its parent's descriptor and never followed.
Names containing ``..`` are refused outright rather than silently cleaned, and hardlinks may
only point at something this archive already put in the layer.

A layer is stored in the kernel's overlay format (see :mod:`pydock.core.layers.format`), so OCI
whiteouts become overlay ones here: ``.wh.NAME`` a character device 0/0 at ``NAME``, and
``.wh..wh..opq`` the ``trusted.overlay.opaque`` xattr on its directory. Whiteouts go through the
same resolution as every other member. What would let an archive forge overlay metadata
directly is refused: a literal device 0/0 (indistinguishable from a whiteout), xattrs in the
``trusted.overlay.`` namespace (a redirect could point a directory anywhere in the lower
layers), and ``.wh.`` names that mean nothing.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TypeVar, cast

import xattr

from pydock.core.errors import PydockError
from pydock.core.files import DirCursor, lstat_at, remove_tree_at, write_all
from pydock.core.layers.budget import BudgetedTarInfo, check_padding, count_member
from pydock.core.layers.compression import READ_ERRORS, error_reason
from pydock.core.layers.format import (
    NODE_TAR_TYPES,
    OPAQUE_MARKER,
    OPAQUE_VALUE,
    OPAQUE_XATTR,
    OVERLAY_XATTR_PREFIX,
    PAX_XATTR_PREFIX,
    WHITEOUT_PREFIX,
    is_whiteout,
    make_whiteout,
)
from pydock.core.syscalls import open_in_root

_CHUNK = 1 << 20
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY
# 2**32 - 1 is (uid_t)-1, which chown reads as "leave unchanged" rather than as an owner.
_MAX_ID = 2**32 - 2
# A device node's or fifo's tar typeflag -> its file type.
_NODE_TYPES = {tar_type: kind for kind, tar_type in NODE_TAR_TYPES.items()}

_T = TypeVar("_T")


class _BadMember(Exception):
    """A member this module refuses; becomes a PydockError naming the member."""


# A refused member, or anything a corrupt archive makes the standard library raise.
_BAD_INPUT = (_BadMember, *READ_ERRORS)


def extract_tar(stream: IO[bytes], dest: Path) -> str:
    """Extract the uncompressed tar ``stream`` into the existing empty directory ``dest``.

    Returns the hex sha256 of the whole stream, read to its end. Anything hostile or corrupt
    raises :class:`PydockError` naming the offending member, leaving ``dest`` half-filled:
    the caller extracts into a temporary directory and deletes it on error.
    """
    reader = _HashingTarReader(stream)
    root_fd = os.open(dest, _DIRECTORY)
    cursor = DirCursor(root_fd)
    try:
        extractor = _Extractor(root_fd, cursor)
        with _errors_as("cannot read tar archive"):
            with tarfile.open(
                fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape",
                tarinfo=BudgetedTarInfo,
            ) as tar:
                for number, member in enumerate(tar):
                    count_member(number)
                    # tarfile keeps every header it has read, for a random access a stream
                    # never makes: some 600 bytes a member, 600 MB for a million.
                    tar.members.clear()  # type: ignore[attr-defined]  # not in typeshed
                    with _errors_as(f"tar member {member.name!r}"):
                        extractor.add(tar, member)
                end = tar.offset
            # Zeros after the end are padding, but not gigabytes of them (a gzip bomb).
            while reader.read(_CHUNK):
                check_padding(reader.size - end)
        _check_end(reader, end)
        extractor.apply_directory_metadata()
    finally:
        cursor.close()
        os.close(root_fd)
    return reader.sha256.hexdigest()


class _Extractor:
    """Creates members inside the layer directory ``root_fd``, one method per member type."""

    def __init__(self, root_fd: int, cursor: DirCursor) -> None:
        self._root_fd = root_fd
        # Members come in tree order: each parent is opened from the previous one, never by
        # a path from the root, which a deep tree would make longer than PATH_MAX allows.
        self._cursor = cursor
        # path -> (member, inode of the directory it created), applied at the end.
        self._directories: dict[str, tuple[tarfile.TarInfo, int]] = {}

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        """Create ``member``, replacing whatever an earlier member left at its path.

        Every member passes through here, so this is where a per-member rewrite (such as
        OCI whiteouts into overlay whiteouts) belongs.
        """
        path = _clean_name(member.name)
        if not (0 <= member.uid <= _MAX_ID and 0 <= member.gid <= _MAX_ID):
            raise _BadMember(f"owner {member.uid}:{member.gid} is out of range")
        _check_overlay_forgery(member)
        parent, _, name = path.rpartition("/")
        whiteout = _whiteout_target(name, member)
        parent_fd = self._open_dir(parent)
        try:
            if whiteout == OPAQUE_MARKER:
                xattr.setxattr(parent_fd, OPAQUE_XATTR, OPAQUE_VALUE)
            elif whiteout is not None:
                _whiteout(parent_fd, whiteout)
            elif member.isdir():
                self._directory(parent_fd, name, path, member)
            elif path == ".":
                raise _BadMember("the layer root can only be a directory")
            elif member.isreg():
                self._file(parent_fd, name, member, tar)
            elif member.issym():
                self._symlink(parent_fd, name, member)
            elif member.islnk():
                self._hardlink(parent_fd, name, member)
            elif member.type in _NODE_TYPES:
                self._node(parent_fd, name, member)
            else:
                raise _BadMember(f"unsupported member type {member.type!r}")
        finally:
            os.close(parent_fd)

    def apply_directory_metadata(self) -> None:
        """Set the mode and times of every directory member, deepest first.

        This waits for the end because creating an entry changes its directory's mtime, and
        a directory whose mode denies writing would stop a non-root extraction.
        """
        deepest_first = sorted(
            self._directories.items(), key=lambda item: _depth(item[0]), reverse=True
        )
        for path, (member, inode) in deepest_first:
            with _errors_as(f"tar member {member.name!r}"):
                try:
                    fd = self._open_existing(path)
                except OSError as e:
                    if e.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        continue  # a later member replaced it, or a directory above it
                    raise
                try:
                    # Reached by another name (through a symlink planted later), this is not
                    # the directory the member created, which is gone.
                    if os.fstat(fd).st_ino == inode:
                        _set_metadata_fd(fd, member)
                finally:
                    os.close(fd)

    def _open_existing(self, path: str) -> int:
        parts = [] if path == "." else path.split("/")
        try:
            return self._cursor.open(parts)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
        # Through a symlink: resolved inside the layer, as a path.
        return open_in_root(self._root_fd, path, _DIRECTORY | os.O_NOFOLLOW)

    def _open_dir(self, path: str) -> int:
        """A descriptor of directory ``path``, creating missing ones (0755, root) as tar does."""
        parts = path.split("/") if path else []

        def create(parent_fd: int, name: str, index: int) -> int:
            return _make_parent(self._root_fd, parent_fd, name, "/".join(parts[: index + 1]))

        try:
            return self._cursor.open(parts, create)
        except OSError as e:
            if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
        # A symlink or a whiteout on the way: resolved inside the layer, as a path.
        for depth in range(len(parts), -1, -1):
            try:
                fd = open_in_root(self._root_fd, "/".join(parts[:depth]) or ".", _DIRECTORY)
                break
            except (FileNotFoundError, NotADirectoryError):
                # Not a directory may be a whiteout, which _make_parent turns into one.
                if depth == 0:
                    raise
        for index in range(depth, len(parts)):
            try:
                child = _make_parent(self._root_fd, fd, parts[index], "/".join(parts[: index + 1]))
            finally:
                os.close(fd)
            fd = child
        return fd

    def _directory(self, parent_fd: int, name: str, path: str, member: tarfile.TarInfo) -> None:
        st = lstat_at(parent_fd, name)
        if st is None or not stat.S_ISDIR(st.st_mode):
            _replace(parent_fd, name, lambda: os.mkdir(name, 0o700, dir_fd=parent_fd))
            if st is not None and is_whiteout(st):
                _make_opaque(parent_fd, name)
        inode = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_ino
        self._directories[path] = (member, inode)

    def _file(
        self, parent_fd: int, name: str, member: tarfile.TarInfo, tar: tarfile.TarFile
    ) -> None:
        _check_fits(parent_fd, member)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = _replace(parent_fd, name, lambda: os.open(name, flags, 0o600, dir_fd=parent_fd))
        try:
            if member.sparse is None:
                contents = tar.extractfile(member)
                assert contents is not None  # only None for non-regular members
                while chunk := contents.read(_CHUNK):
                    write_all(fd, chunk)
            else:
                _write_sparse(fd, member, tar)
            _set_metadata_fd(fd, member)
        finally:
            os.close(fd)

    def _symlink(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        # The target is kept verbatim: it is only ever resolved inside the container.
        _replace(parent_fd, name, lambda: os.symlink(member.linkname, name, dir_fd=parent_fd))
        _set_metadata_at(parent_fd, name, member)

    def _hardlink(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        target = _clean_name(member.linkname, f"hardlink target {member.linkname!r}")
        target_dir, _, target_name = target.rpartition("/")
        missing = _BadMember(f"hardlink target {member.linkname!r} is not in the layer")
        try:
            source_fd = open_in_root(self._root_fd, target_dir or ".", _DIRECTORY)
        except (FileNotFoundError, NotADirectoryError):
            raise missing from None
        try:
            st = lstat_at(source_fd, target_name)
            if st is None or is_whiteout(st):
                raise missing
            if stat.S_ISDIR(st.st_mode):
                raise _BadMember(f"hardlink target {member.linkname!r} is a directory")
            # follow_symlinks=False links a symlink itself, never what it points to.
            _replace(
                parent_fd,
                name,
                lambda: os.link(
                    target_name,
                    name,
                    src_dir_fd=source_fd,
                    dst_dir_fd=parent_fd,
                    follow_symlinks=False,
                ),
            )
        finally:
            os.close(source_fd)
        # No metadata: the link shares its inode, and so its metadata, with the target.

    def _node(self, parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
        # Device nodes are kept: the container's mounts decide whether they can be used.
        kind = _NODE_TYPES[member.type]
        device = os.makedev(member.devmajor, member.devminor)
        _replace(parent_fd, name, lambda: os.mknod(name, kind | 0o600, device, dir_fd=parent_fd))
        _set_metadata_at(parent_fd, name, member)


class _HashingTarReader(io.RawIOBase):
    """A layer's tar stream, hashed as it is read for its diff_id, remembering where its last
    non-zero byte was (for :func:`_check_end`). The caller keeps the stream and closes it."""

    def __init__(self, stream: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.data_end = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self.sha256.update(data)
        nonzero = len(data.rstrip(b"\0"))
        if nonzero:
            self.data_end = self.size + nonzero
        self.size += len(data)
        return data


def _check_end(reader: _HashingTarReader, end: int) -> None:
    """Refuse an archive that does not end with an end-of-archive marker.

    tarfile quietly treats a garbled or truncated header after the first member as the end
    of the archive, which would drop the rest of a corrupt layer without a word. ``end`` is
    where it stopped; only zero bytes, at least one block of them, may follow.
    """
    if reader.data_end > end:
        raise PydockError(f"cannot read tar archive: invalid header or trailing data at byte {end}")
    if reader.size - end < tarfile.BLOCKSIZE:
        raise PydockError("cannot read tar archive: truncated (no end-of-archive marker)")


@contextmanager
def _errors_as(prefix: str) -> Iterator[None]:
    try:
        yield
    except _BAD_INPUT as e:
        raise PydockError(f"{prefix}: {error_reason(e)}") from e





def _clean_name(name: str, what: str = "the name") -> str:
    """``name`` relative to the layer root, without empty or ``.`` components; ``.`` is the root."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise _BadMember(f"{what} contains '..'")
    return "/".join(parts) or "."


def _depth(path: str) -> int:
    return 0 if path == "." else path.count("/") + 1



def _not_a_directory(root_fd: int, st: os.stat_result | None, path: str) -> str:
    """Why ``path``, which exists (as ``st``), cannot be entered as a directory."""
    if st is None or not stat.S_ISLNK(st.st_mode):
        return f"{path!r} is not a directory"
    try:
        os.close(open_in_root(root_fd, path, os.O_PATH))
    except FileNotFoundError:
        return f"{path!r} is a symlink to nothing in the layer"
    return f"{path!r} is a symlink to a non-directory"


def _whiteout_target(name: str, member: tarfile.TarInfo) -> str | None:
    """What the OCI whiteout ``name`` hides: a sibling's name, or OPAQUE_MARKER for its
    directory's lower contents; None if ``name`` is not a whiteout."""
    if not name.startswith(WHITEOUT_PREFIX):
        return None
    if not member.isreg():
        raise _BadMember("a whiteout must be a regular file")
    if name == OPAQUE_MARKER:
        return name
    target = name.removeprefix(WHITEOUT_PREFIX)
    if target in ("", ".", ".."):
        raise _BadMember(f"{name!r} is not a valid whiteout")
    # Reserved by the OCI spec for markers such as the opaque one, of which no other exists.
    if target.startswith(WHITEOUT_PREFIX):
        raise _BadMember(f"unknown whiteout marker {name!r}")
    return target


def _check_fits(dir_fd: int, member: tarfile.TarInfo) -> None:
    """Refuse a file that says it is bigger than the store's free space, before writing it.

    A member's size is what its header claims. One in a compressed archive can claim far
    more than the archive holds (its data is then bounded by the expansion budget). A
    sparse member (a map of data blocks and a total size) is written sparse, but its
    apparent size must fit too: a copy of the layer (the vfs driver, an export) may write
    its holes out. tarfile also reads a negative size, which no real file has.
    """
    if member.size < 0:
        raise _BadMember(f"invalid size {member.size}")
    fs = os.fstatvfs(dir_fd)
    free = fs.f_bavail * fs.f_frsize
    if member.size > free:
        raise _BadMember(f"it claims {member.size} bytes, more than the {free} free in the store")


def _write_sparse(fd: int, member: tarfile.TarInfo, tar: tarfile.TarFile) -> None:
    """Write only the data blocks of sparse ``member``, then extend the file to its size.

    tarfile's extractfile reads a hole as zeros; written out, a 172-byte GNU sparse tar
    claiming the free space fills the store's filesystem. The blocks are stored one after
    the other from ``offset_data``, so they are read straight from the archive stream and
    written at their offsets: what is skipped stays a hole.
    """
    assert tar.fileobj is not None  # an open archive's
    tar.fileobj.seek(member.offset_data)  # only ever forward: a stream can seek no other way
    blocks = cast(list[tuple[int, int]], member.sparse)  # typeshed has it as an int
    # tar.offset is already past this member's stored data: a map that holds more would have
    # the next headers read as file data.
    if sum(size for _, size in blocks) > tar.offset - member.offset_data:
        raise _BadMember("its sparse map holds more data than the archive stores")
    for offset, size in blocks:
        if offset < 0 or size < 0 or offset + size > member.size:
            raise _BadMember(f"sparse block {offset}+{size} is outside its size")
        os.lseek(fd, offset, os.SEEK_SET)
        while size > 0:
            chunk = tar.fileobj.read(min(size, _CHUNK))
            if not chunk:
                raise _BadMember("unexpected end of data")
            write_all(fd, chunk)
            size -= len(chunk)
    os.ftruncate(fd, member.size)


def _check_overlay_forgery(member: tarfile.TarInfo) -> None:
    if member.ischr() and member.devmajor == 0 and member.devminor == 0:
        raise _BadMember("a character device 0/0 would be taken for a whiteout")
    for key, _ in _xattrs(member):
        if key.startswith(OVERLAY_XATTR_PREFIX):
            raise _BadMember(f"xattr {key!r} is overlay metadata")


def _whiteout(dir_fd: int, name: str) -> None:
    _replace(dir_fd, name, lambda: make_whiteout(name, dir_fd))


def _make_opaque(dir_fd: int, name: str) -> None:
    # Just created by us, so O_NOFOLLOW alone keeps this inside the layer.
    fd = os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        xattr.setxattr(fd, OPAQUE_XATTR, OPAQUE_VALUE)
    finally:
        os.close(fd)


def _make_parent(root_fd: int, dir_fd: int, name: str, path: str) -> int:
    """Create directory ``path`` (``name`` in ``dir_fd``) as tar does, and open it."""
    try:
        os.mkdir(name, dir_fd=dir_fd)
    except FileExistsError:
        # It exists, yet resolving ``path`` found no directory.
        st = lstat_at(dir_fd, name)
        if st is None or not is_whiteout(st):
            raise _BadMember(_not_a_directory(root_fd, st, path)) from None
        # An entry under a path this layer deleted: the OCI spec keeps it, and only an
        # opaque directory also keeps hiding what the lower layers had there.
        os.unlink(name, dir_fd=dir_fd)
        os.mkdir(name, dir_fd=dir_fd)
        _make_opaque(dir_fd, name)
    os.chown(name, 0, 0, dir_fd=dir_fd, follow_symlinks=False)
    _chmod_nofollow(dir_fd, name, 0o755)
    # Just created by us, so O_NOFOLLOW alone keeps this inside the layer.
    return os.open(name, _DIRECTORY | os.O_NOFOLLOW, dir_fd=dir_fd)


def _replace(parent_fd: int, name: str, create: Callable[[], _T]) -> _T:
    """``create()``, first removing whatever an earlier member left at ``name``."""
    try:
        return create()
    except FileExistsError:
        pass
    try:
        os.unlink(name, dir_fd=parent_fd)  # a symlink is removed itself, never followed
    except IsADirectoryError:
        # Never follows a symlink inside the tree it removes, and any depth goes.
        remove_tree_at(parent_fd, name)
    return create()


def _chmod_nofollow(dir_fd: int, name: str, mode: int) -> None:
    """chmod ``name`` itself, which must not be a symlink, never opening it for I/O.

    os.chmod(follow_symlinks=False) needs glibc 2.32 or later; this is how glibc does it: an
    O_PATH descriptor (which does not run a device's driver) and its /proc/self/fd link.
    """
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW, dir_fd=dir_fd)
    try:
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


def _xattrs(member: tarfile.TarInfo) -> Iterator[tuple[str, bytes]]:
    for key, value in member.pax_headers.items():
        if key.startswith(PAX_XATTR_PREFIX):
            # tarfile decodes PAX values as UTF-8 with surrogateescape; this undoes it.
            yield key.removeprefix(PAX_XATTR_PREFIX), value.encode("utf-8", "surrogateescape")


def _mtime_ns(member: tarfile.TarInfo) -> int:
    # tarfile turns a PAX mtime into a float, which cannot hold nanoseconds; its text can.
    text = member.pax_headers.get("mtime", str(member.mtime))
    sign = -1 if text.startswith("-") else 1
    seconds, _, fraction = text.removeprefix("-").partition(".")
    try:
        return sign * (int(seconds) * 1_000_000_000 + int(fraction[:9].ljust(9, "0")))
    except ValueError:
        raise _BadMember(f"invalid mtime {text!r}") from None


def _set_metadata_fd(fd: int, member: tarfile.TarInfo) -> None:
    """Owner, mode, xattrs and times of a regular file or directory, through its descriptor."""
    os.fchown(fd, member.uid, member.gid)
    os.fchmod(fd, member.mode & 0o7777)  # after chown, which clears setuid and setgid
    for key, value in _xattrs(member):
        xattr.setxattr(fd, key, value)  # after chown, which drops security.capability
    ns = _mtime_ns(member)
    os.utime(fd, ns=(ns, ns))


def _set_metadata_at(parent_fd: int, name: str, member: tarfile.TarInfo) -> None:
    """Owner, mode, xattrs and times of a symlink or special file, by name, never followed.

    These are not opened: opening a device node would run its driver.
    """
    os.chown(name, member.uid, member.gid, dir_fd=parent_fd, follow_symlinks=False)
    if not member.issym():  # Linux ignores the mode of a symlink and cannot change it
        _chmod_nofollow(parent_fd, name, member.mode & 0o7777)
    for key, value in _xattrs(member):
        # The kernel allows user.* xattrs only on regular files and directories, so no
        # Linux system can have produced one here; they are dropped rather than refused.
        if not key.startswith("user."):
            # The parent's /proc/self/fd link names the very directory we hold, so this
            # reaches exactly the entry just created; symlink=True does not follow it.
            xattr.setxattr(f"/proc/self/fd/{parent_fd}/{name}", key, value, symlink=True)
    ns = _mtime_ns(member)
    os.utime(name, ns=(ns, ns), dir_fd=parent_fd, follow_symlinks=False)
