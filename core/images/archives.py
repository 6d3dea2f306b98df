"""``pydock image load`` and ``image save``: images to and from docker archives and OCI layouts.

Loading reads what ``docker save``, ``podman save`` (either format), ``skopeo copy`` and
``umoci`` write, as a directory or a tar (plain or gzip). Everything in it is untrusted: every
path it names must stay inside it, every blob must hash to its OCI digest, and every layer's
uncompressed tar must hash to its ``rootfs.diff_ids`` entry in the config, which is stored
byte for byte so that the image id (the config's sha256) is the one docker and podman show.
Layers are extracted straight from the archive, one stream at a time, never held in memory.
All images of an archive are named in one step at the end; before that a failure removes the
layers the load imported and no other image uses, so a rejected archive leaves nothing behind.

Names come from docker's ``RepoTags`` or, in an OCI layout, from the index's annotations:
``io.containerd.image.name`` (containerd, docker) when there is one, else
``org.opencontainers.image.ref.name`` when it is a full reference (``name:tag``, as podman
writes it). A bare tag there (``latest``, as ``skopeo copy ... oci:DIR:latest`` writes it)
names no repository, so, as docker does, such an image is loaded without a name; it is
addressable by id.

The store keeps extracted trees, not layer tars, so saving regenerates each layer tar. Tar bytes
are not canonical: a layer made by another tool regenerates to a different digest. The saved
config then carries the regenerated ``diff_ids`` (and so the saved image has a new id), which
keeps the archive consistent for every tool that loads it; the content is the same. Images
that pydock saved and loaded back regenerate to the same bytes and keep their id.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import lzma
import os
import platform
import posixpath
import re
import secrets
import shutil
import stat
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar, cast

from pydock.core import storage_root
from pydock.core.errors import PydockError
from pydock.core.images.store import Image, ImageStore, normalize_reference
from pydock.core.progress import ProgressReader

# Manifests, indexes and configs are small; anything bigger is not an image document.
_JSON_LIMIT = 8 << 20
# The kernel's own cap on overlay lower layers (OVL_MAX_STACK in fs/overlayfs): no runnable
# image has more.
_MAX_LAYERS = 500
_MAX_IMAGES = 1000
_MAX_MEMBERS = 100_000
_MAX_LINKS = 16
# An index may point at further indexes; real ones nest once (a multi-platform image).
_MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 20

_DIGEST = re.compile(r"sha256:([0-9a-f]{64})")
# A file named after a digest ("<hex>.json" from docker save, "blobs/sha256/<hex>") must match it.
_DIGEST_NAMED = re.compile(r"(?:.*/)?([0-9a-f]{64})(?:\.json)?")
_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_INDEX_TYPES = {_OCI_INDEX, "application/vnd.docker.distribution.manifest.list.v2+json"}
_MANIFEST_TYPES = {_OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}
_REF_NAME = "org.opencontainers.image.ref.name"
_CONTAINERD_NAME = "io.containerd.image.name"

# What docker's image config types accept in the fields pydock reads (null is always fine);
# Cmd and Entrypoint are its StrSlice, a list of strings or a single one.
_RUN_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
    "Env": ((list,), "a list of strings"),
    "Cmd": ((list, str), "a string or a list of strings"),
    "Entrypoint": ((list, str), "a string or a list of strings"),
    "WorkingDir": ((str,), "a string"),
    "User": ((str,), "a string"),
}

_T = TypeVar("_T")


# -- load -------------------------------------------------------------------


@dataclass
class _Layer:
    path: str  # inside the archive
    digest: str | None = None  # OCI: sha256 of the blob as stored
    size: int | None = None  # OCI: size of the blob as stored


@dataclass
class _Planned:
    """One image of the archive, checked as far as can be without reading its layers."""

    config: bytes
    diff_ids: list[str]
    layers: list[_Layer]
    names: list[str] = field(default_factory=list)


def load_archive(store: ImageStore, source: Path) -> list[Image]:
    """Load every image in ``source``: a docker archive or an OCI image layout, as a
    directory or a tar (plain or gzip). See the module docstring for what is checked."""
    with _open_source(store, source) as archive:
        if archive.exists("manifest.json"):
            planned = _plan_docker(archive)
        elif archive.exists("index.json"):
            planned = _plan_oci(archive)
        else:
            raise PydockError(f"{source}: neither a docker archive (no manifest.json) nor an "
                              "OCI image layout (no index.json)")
        imported: list[str] = []
        try:
            _import_layers(store, archive, planned, imported)
            return store.add_raw_images([(p.config, p.names) for p in planned])
        except BaseException:
            store.remove_unused_layers(imported)
            raise


def _plan_docker(archive: _Source) -> list[_Planned]:
    manifest = _expect(archive.read_json("manifest.json"), list, "manifest.json")
    if not 0 < len(manifest) <= _MAX_IMAGES:
        raise PydockError(f"manifest.json lists {len(manifest)} images")
    planned = []
    for number, entry in enumerate(manifest):
        what = f"manifest.json image {number}"
        entry = _expect(entry, dict, what)
        config_path = _archive_path(entry.get("Config"), f"{what} Config")
        config = archive.read_bytes(config_path)
        named = _DIGEST_NAMED.fullmatch(config_path)
        if named and hashlib.sha256(config).hexdigest() != named[1]:
            raise PydockError(f"config {config_path}: content does not match its digest name")
        diff_ids = _diff_ids(config, config_path)
        paths = _expect(entry.get("Layers"), list, f"{what} Layers")
        if len(paths) != len(diff_ids):
            raise PydockError(f"{what}: {len(paths)} layers but its config has "
                              f"{len(diff_ids)} diff_ids")
        tags = _expect(entry.get("RepoTags") or [], list, f"{what} RepoTags")
        names = [normalize_reference(_expect(t, str, f"{what} RepoTags")) for t in tags]
        layers = [_Layer(_archive_path(p, f"{what} Layers")) for p in paths]
        planned.append(_Planned(config, diff_ids, layers, names))
    return planned


def _plan_oci(archive: _Source) -> list[_Planned]:
    layout = _expect(archive.read_json("oci-layout"), dict, "oci-layout")
    if not isinstance(layout.get("imageLayoutVersion"), str):
        raise PydockError("oci-layout: no imageLayoutVersion")
    index = _expect(archive.read_json("index.json"), dict, "index.json")
    descriptors = _expect(index.get("manifests"), list, "index.json manifests")
    if not 0 < len(descriptors) <= _MAX_IMAGES:
        raise PydockError(f"index.json lists {len(descriptors)} manifests")
    # Several index entries (one per tag) may name one image: merge them by image id.
    by_id: dict[str, _Planned] = {}
    for number, value in enumerate(descriptors):
        descriptor = _expect(value, dict, f"index.json manifests[{number}]")
        image = _plan_oci_manifest(archive, descriptor, 0)
        image_id = hashlib.sha256(image.config).hexdigest()
        planned = by_id.setdefault(image_id, image)
        name = _oci_name(descriptor)
        if name and name not in planned.names:
            planned.names.append(name)
    return list(by_id.values())


def _plan_oci_manifest(archive: _Source, descriptor: dict[str, Any], depth: int) -> _Planned:
    digest, document = _read_blob_json(archive, descriptor, "manifest")
    media_type = document.get("mediaType") or descriptor.get("mediaType")
    if media_type in _INDEX_TYPES or (media_type is None and "manifests" in document):
        if depth >= _MAX_INDEX_DEPTH:
            raise PydockError(f"index {digest}: indexes nested too deeply")
        return _plan_oci_manifest(archive, _pick_platform(document, digest), depth + 1)
    if media_type not in _MANIFEST_TYPES and not (media_type is None and "config" in document):
        raise PydockError(f"manifest {digest}: unsupported media type {media_type!r}")
    config_descriptor = _expect(document.get("config"), dict, f"manifest {digest} config")
    config_digest = _descriptor_digest(config_descriptor, f"manifest {digest} config")
    config = archive.read_bytes(_blob_path(config_digest))
    _check_blob(config, config_descriptor, f"config {config_digest}")
    diff_ids = _diff_ids(config, f"config {config_digest}")
    layers = []
    for number, value in enumerate(_expect(document.get("layers"), list,
                                           f"manifest {digest} layers")):
        what = f"manifest {digest} layers[{number}]"
        layer = _expect(value, dict, what)
        if "zstd" in str(layer.get("mediaType", "")):
            raise PydockError(f"{what}: zstd-compressed layers are not supported")
        layer_digest = _descriptor_digest(layer, what)
        layers.append(_Layer(_blob_path(layer_digest), layer_digest,
                             _descriptor_size(layer, what)))
    if len(layers) != len(diff_ids):
        raise PydockError(f"manifest {digest}: {len(layers)} layers but its config has "
                          f"{len(diff_ids)} diff_ids")
    return _Planned(config, diff_ids, layers)


def _pick_platform(index: dict[str, Any], digest: str) -> dict[str, Any]:
    """The index's manifest for this machine (linux and its architecture)."""
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    candidates = [_expect(d, dict, f"index {digest} manifests")
                  for d in _expect(index.get("manifests"), list, f"index {digest} manifests")]
    for candidate in candidates:
        wanted = candidate.get("platform")
        if not isinstance(wanted, dict) or (wanted.get("os"), wanted.get("architecture")) == (
                "linux", arch):
            return candidate
    raise PydockError(f"index {digest}: no image for linux/{arch}")


def _oci_name(descriptor: dict[str, Any]) -> str | None:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        return None
    for key in (_CONTAINERD_NAME, _REF_NAME):
        name = annotations.get(key)
        # A bare tag (no '/' or ':') names no repository: see the module docstring.
        if isinstance(name, str) and ("/" in name or ":" in name):
            return normalize_reference(name)
    return None


def _import_layers(store: ImageStore, archive: _Source, planned: list[_Planned],
                   imported: list[str]) -> None:
    done: dict[str, str] = {}
    total = len({layer.path for image in planned for layer in image.layers})
    for image in planned:
        for layer, expected in zip(image.layers, image.diff_ids, strict=True):
            if layer.path not in done:
                label = f"loading layer {len(done) + 1}/{total}"
                done[layer.path] = _import_layer(store, archive, layer, label, imported)
            if done[layer.path] != expected:
                raise PydockError(f"layer {layer.path}: its content (sha256:"
                                  f"{done[layer.path].removeprefix('sha256:')}) does not match "
                                  f"the config's diff_id {expected}")


def _import_layer(store: ImageStore, archive: _Source, layer: _Layer, label: str,
                  imported: list[str]) -> str:
    raw, size = archive.open(layer.path)
    if layer.size is not None and size != layer.size:
        raw.close()
        raise PydockError(f"layer {layer.path}: {size} bytes where its descriptor says "
                          f"{layer.size}")
    hashing = _HashingReader(ProgressReader(raw, label))
    with io.BufferedReader(hashing, _CHUNK) as buffered:
        magic = buffered.peek(len(_ZSTD_MAGIC))[: len(_ZSTD_MAGIC)]
        if magic.startswith(_ZSTD_MAGIC):
            raise PydockError(f"layer {layer.path}: zstd-compressed layers are not supported")
        stream: IO[bytes] = buffered
        if magic.startswith(_GZIP_MAGIC):
            stream = cast(IO[bytes], gzip.GzipFile(fileobj=buffered, mode="rb"))
        try:
            diff_id = store.import_layer(stream)
        except PydockError as e:
            raise PydockError(f"layer {layer.path}: {e}") from e
        imported.append(diff_id)
        while buffered.read(_CHUNK):
            pass
    if layer.digest is not None and f"sha256:{hashing.sha256.hexdigest()}" != layer.digest:
        raise PydockError(f"layer {layer.path}: content does not match its digest")
    return diff_id


def _read_blob_json(archive: _Source, descriptor: dict[str, Any],
                    what: str) -> tuple[str, dict[str, Any]]:
    digest = _descriptor_digest(descriptor, what)
    data = archive.read_bytes(_blob_path(digest))
    _check_blob(data, descriptor, f"{what} {digest}")
    return digest, _expect(_parse_json(data, f"{what} {digest}"), dict, f"{what} {digest}")


def _check_blob(data: bytes, descriptor: dict[str, Any], what: str) -> None:
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != descriptor["digest"]:
        raise PydockError(f"{what}: content does not match its digest")
    if len(data) != _descriptor_size(descriptor, what):
        raise PydockError(f"{what}: size does not match its descriptor")


def _descriptor_digest(descriptor: dict[str, Any], what: str) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise PydockError(f"{what}: digest {digest!r} is not a sha256 digest")
    return digest


def _descriptor_size(descriptor: dict[str, Any], what: str) -> int:
    size = descriptor.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise PydockError(f"{what}: invalid size {size!r}")
    return size


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def _diff_ids(config: bytes, what: str) -> list[str]:
    document = _expect(_parse_json(config, what), dict, what)
    _check_run_config(document, what)
    rootfs = _expect(document.get("rootfs"), dict, f"{what} rootfs")
    diff_ids = _expect(rootfs.get("diff_ids"), list, f"{what} rootfs.diff_ids")
    if len(diff_ids) > _MAX_LAYERS:
        raise PydockError(f"{what}: {len(diff_ids)} layers, more than the {_MAX_LAYERS} "
                          "overlay can stack")
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or not _DIGEST.fullmatch(diff_id):
            raise PydockError(f"{what}: diff_id {diff_id!r} is not a sha256 digest")
    return diff_ids


def _check_run_config(document: dict[str, Any], what: str) -> None:
    """Refuse a config whose fields pydock reads have JSON types docker's Go structs cannot
    hold (``docker load`` refuses it too), or strings with a NUL byte, which no command,
    environment or path can hold: better now than at every run."""
    if document.get("created") is not None:
        _expect(document["created"], str, f"{what} created")
    section = document.get("config")
    if section is None:
        return
    section = _expect(section, dict, f"{what} config")
    for key, (kinds, expected) in _RUN_FIELDS.items():
        value = section.get(key)
        if value is None:
            continue
        texts = value if isinstance(value, list) else [value]
        if not isinstance(value, kinds) or not all(isinstance(t, str) for t in texts):
            raise PydockError(f"{what} config.{key}: expected {expected}")
        if any("\0" in text for text in texts):
            raise PydockError(f"{what} config.{key}: contains a NUL byte")


def _archive_path(value: object, what: str) -> str:
    """``value``, a path inside the archive, made canonical; never absolute or climbing out."""
    if not isinstance(value, str) or not value.strip("/."):
        raise PydockError(f"{what}: invalid path {value!r}")
    if value.startswith("/"):
        raise PydockError(f"{what}: absolute path {value!r} is not allowed in an archive")
    parts = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in parts or "\0" in value:
        raise PydockError(f"{what}: path {value!r} leaves the archive")
    return "/".join(parts)


def _parse_json(data: bytes, what: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise PydockError(f"{what}: invalid JSON ({e})") from None


def _expect(value: object, kind: type[_T], what: str) -> _T:
    if not isinstance(value, kind):
        raise PydockError(f"{what}: expected a JSON {_JSON_KINDS.get(kind, kind.__name__)}")
    return value


_JSON_KINDS: dict[type, str] = {dict: "object", list: "array", str: "string"}


class _Source:
    """Files of an archive, by canonical path; symlinks stay inside it."""

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
        return _parse_json(self.read_bytes(path), path)


class _DirectorySource(_Source):
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


class _TarSource(_Source):
    """An uncompressed tar file, read in place: members are slices of the file."""

    def __init__(self, file: BinaryIO, label: Path) -> None:
        self._file = file
        self._label = label
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            with tarfile.open(fileobj=file, mode="r:") as tar:
                for number, member in enumerate(tar):
                    if number >= _MAX_MEMBERS:
                        raise PydockError(f"{label}: more than {_MAX_MEMBERS} files")
                    parts = [p for p in member.name.split("/") if p not in ("", ".")]
                    self._members["/".join(parts)] = member
        except (tarfile.TarError, OSError, EOFError, ValueError, OverflowError,
                RecursionError) as e:
            raise PydockError(f"{label}: cannot read tar archive: {e}") from None

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
                path = _archive_path(target, f"{self._label}: symlink {path}")
            elif member.islnk():
                path = _archive_path(member.linkname, f"{self._label}: hardlink {path}")
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


class _HashingReader(io.RawIOBase):
    def __init__(self, stream: io.RawIOBase) -> None:
        super().__init__()
        self._stream = stream
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer)) or b""
        self.sha256.update(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()


@contextlib.contextmanager
def _open_source(store: ImageStore, source: Path) -> Iterator[_Source]:
    from pydock.core.layers.compression import open_tarball

    with contextlib.ExitStack() as stack:
        if source.is_dir():
            directory = _DirectorySource(source)
            stack.callback(directory.close)
            yield directory
            return
        stream = stack.enter_context(open_tarball(source))
        # open_tarball gives the file itself when it is not compressed, else a decompressor.
        if not isinstance(stream, io.BufferedReader):
            # A compressed archive cannot be read in place: unpack it once to an unnamed
            # temporary file on the store's filesystem (not a tmpfs, which would fill memory).
            storage_root.ensure(store.root)
            plain = stack.enter_context(tempfile.TemporaryFile(dir=store.layers_dir))
            try:
                with ProgressReader(stream, f"decompressing {source.name}") as progress:
                    shutil.copyfileobj(progress, plain, _CHUNK)
            # A truncated stream raises EOFError, which click would take for ^D ("Aborted").
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as e:
                raise PydockError(f"{source}: cannot decompress: {e}") from None
            plain.seek(0)
            stream = cast(BinaryIO, plain)
        yield _TarSource(stream, source)


# -- save -------------------------------------------------------------------


def save_archive(store: ImageStore, reference: str, output: Path, fmt: str) -> None:
    """Write image ``reference`` to ``output``: a docker archive (``fmt`` "docker", as
    ``docker save``) or an OCI layout tar (``fmt`` "oci", as ``oci-archive:``)."""
    if fmt not in ("docker", "oci"):
        raise PydockError(f"unknown archive format {fmt!r}: use docker or oci")
    image = store.resolve(reference)
    names = list(image.names)
    with contextlib.suppress(PydockError):
        if normalize_reference(reference) in names:
            names = [normalize_reference(reference)]  # docker save NAME saves just that name
    if output.is_dir():
        raise PydockError(f"{output} is a directory")
    if not output.parent.is_dir():
        raise PydockError(f"{output.parent}: no such directory")
    tmp = output.with_name(f".{output.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as file:
            writer = _TarWriter(file)
            if fmt == "docker":
                _write_docker(store, image, names, writer)
            else:
                _write_oci(store, image, names, writer)
            writer.finish()
            file.flush()
            os.fsync(file.fileno())
        os.rename(tmp, output)
    except OSError as e:
        raise PydockError(f"cannot write {output}: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write_docker(store: ImageStore, image: Image, names: list[str],
                  writer: _TarWriter) -> None:
    diff_ids = _write_layers(store, image, writer, lambda hex_: f"{hex_}.tar")
    config = _config_for(image, store, diff_ids)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    writer.add_bytes(config_name, config)
    manifest = [{"Config": config_name, "RepoTags": names,
                 "Layers": [f"{d.removeprefix('sha256:')}.tar" for d in diff_ids]}]
    writer.add_bytes("manifest.json", json.dumps(manifest).encode())


def _write_oci(store: ImageStore, image: Image, names: list[str], writer: _TarWriter) -> None:
    writer.add_bytes("oci-layout", json.dumps(_OCI_LAYOUT).encode())
    writer.add_directory("blobs")
    writer.add_directory("blobs/sha256")
    diff_ids = _write_layers(store, image, writer, lambda hex_: f"blobs/sha256/{hex_}")
    config = _config_for(image, store, diff_ids)
    layers = [{"mediaType": _OCI_LAYER, "digest": d,
               "size": writer.sizes[_blob_path(d)]} for d in diff_ids]
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": _OCI_MANIFEST,
        "config": writer.add_blob(config, _OCI_CONFIG), "layers": layers,
    }).encode()
    descriptor = writer.add_blob(manifest, _OCI_MANIFEST)
    # Full names in ref.name, as podman writes them: the module docstring says why.
    entries = [{**descriptor, "annotations": {_REF_NAME: name, _CONTAINERD_NAME: name}}
               for name in names] or [descriptor]
    index = {"schemaVersion": 2, "mediaType": _OCI_INDEX, "manifests": entries}
    writer.add_bytes("index.json", json.dumps(index).encode())


def _write_layers(store: ImageStore, image: Image, writer: _TarWriter,
                  name_of: Callable[[str], str]) -> list[str]:
    """Regenerate each layer tar into the archive; its diff_ids, as regenerated."""
    from pydock.core.layers.pack import write_layer_tar

    regenerated: dict[str, str] = {}
    for number, diff_id in enumerate(image.diff_ids, 1):
        if diff_id in regenerated:
            continue
        layer = store.layer_path(diff_id)
        if not layer.is_dir():
            raise PydockError(f"layer {diff_id} of image {image.id} is missing from the store")
        _show_progress(f"saving layer {number}/{len(image.diff_ids)}")
        hex_ = writer.add_stream(functools.partial(write_layer_tar, layer=layer), name_of)
        regenerated[diff_id] = f"sha256:{hex_}"
    _show_progress(None)
    return [regenerated[d] for d in image.diff_ids]


def _config_for(image: Image, store: ImageStore, diff_ids: list[str]) -> bytes:
    """The stored config verbatim when the regenerated layers match it, else a copy with
    the regenerated diff_ids (see the module docstring)."""
    blob = (store.configs_dir / f"{image.id.removeprefix('sha256:')}.json").read_bytes()
    if diff_ids == image.diff_ids:
        return blob
    config = json.loads(blob)
    config["rootfs"]["diff_ids"] = diff_ids
    return json.dumps(config, separators=(",", ":")).encode()


def _show_progress(message: str | None) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r{message}\033[K" if message else "\n")
        sys.stderr.flush()


class _TarWriter:
    """A tar of regular files and directories, written in one pass, deterministic (owner 0,
    time 0). A streamed member's name may depend on its content (``blobs/sha256/<digest>``):
    its header is written as a placeholder and filled in once the content is written."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.sizes: dict[str, int] = {}

    def add_directory(self, name: str) -> None:
        info = self._info(name, 0)
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
        self._file.write(self._header(info))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._file.write(self._header(self._info(name, len(data))))
        self._file.write(data)
        self._file.write(bytes(-len(data) % tarfile.BLOCKSIZE))

    def add_blob(self, data: bytes, media_type: str) -> dict[str, Any]:
        """Add ``data`` under blobs/sha256/; its OCI descriptor."""
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        self.add_bytes(_blob_path(digest), data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    def add_stream(self, write: Callable[[BinaryIO], str],
                   name_of: Callable[[str], str]) -> str:
        """Add the member ``write(file)`` writes, returning a hex digest, under ``name_of``
        that digest."""
        start = self._file.tell()
        self._file.write(bytes(tarfile.BLOCKSIZE))
        hex_ = write(self._file)
        end = self._file.tell()
        size = end - start - tarfile.BLOCKSIZE
        self._file.write(bytes(-size % tarfile.BLOCKSIZE))
        after = self._file.tell()
        name = name_of(hex_)
        header = self._header(self._info(name, size))
        if len(header) != tarfile.BLOCKSIZE:
            raise PydockError(f"archive member name {name!r} is too long")
        self._file.seek(start)
        self._file.write(header)
        self._file.seek(after)
        self.sizes[name] = size
        return hex_

    def finish(self) -> None:
        self._file.write(bytes(2 * tarfile.BLOCKSIZE))

    @staticmethod
    def _info(name: str, size: int) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        return info

    @staticmethod
    def _header(info: tarfile.TarInfo) -> bytes:
        # GNU format keeps a short-named header one block even past 8 GiB (base-256 size).
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
