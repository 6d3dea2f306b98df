"""``pydock image load``: images from docker archives and OCI layouts into the store.

Loading reads what ``docker save``, ``podman save`` (either format), ``skopeo copy`` and
``umoci`` write, as a directory or a tar (plain or gzip). Everything in it is untrusted: every
path it names must stay inside it (:mod:`pydock.core.images.archive_files`), every blob must
hash to its OCI digest, and every layer's uncompressed tar must hash to its ``rootfs.diff_ids``
entry in the config, which is stored byte for byte so that the image id (the config's sha256)
is the one docker and podman show. Layers are extracted straight from the archive, one stream
at a time, never held in memory. All images of an archive are named in one step at the end;
before that a failure removes the layers the load imported and no other image uses, so a
rejected archive leaves nothing behind.

Names come from docker's ``RepoTags`` or, in an OCI layout, from the index's annotations:
``io.containerd.image.name`` (containerd, docker) when there is one, else
``org.opencontainers.image.ref.name`` when it is a full reference (``name:tag``, as podman
writes it). A bare tag there (``latest``, as ``skopeo copy ... oci:DIR:latest`` writes it)
names no repository, so, as docker does, such an image is loaded without a name (it is
addressable by id) unless ``--name REPOSITORY`` gives it one: ``REPOSITORY:TAG``.
"""

from __future__ import annotations

import hashlib
import io
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pydock.core.errors import PydockError
from pydock.core.ids import HEX64, is_digest
from pydock.core.images.archive_files import ArchiveFiles, archive_path, open_archive, parse_json
from pydock.core.images.blobs import BlobStore
from pydock.core.images.blobs import KeptBlobs as _KeptBlobs
from pydock.core.images.oci import (
    CONTAINERD_NAME,
    INDEX_TYPES,
    MANIFEST_TYPES,
    REF_NAME,
    blob_path,
)
from pydock.core.images.store import Image, ImageStore, normalize_reference, parse_reference
from pydock.core.layers.budget import ExpansionBudget
from pydock.core.layers.compression import gunzipped
from pydock.core.layers.format import MAX_LAYERS
from pydock.core.progress import ProgressReader

_MAX_IMAGES = 1000
# An index may point at further indexes; real ones nest once (a multi-platform image).
_MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 20

# A file named after a digest ("<hex>.json" from docker save, "blobs/sha256/<hex>") must match it.
_DIGEST_NAMED = re.compile(rf"(?:.*/)?({HEX64})(?:\.json)?")

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


@dataclass
class _ArchivedLayer:
    """Where one layer of an image is in the archive, and what its descriptor promises."""

    path: str  # inside the archive
    digest: str | None = None  # OCI: sha256 of the blob as stored
    size: int | None = None  # OCI: size of the blob as stored


@dataclass
class _Planned:
    """One image of the archive, checked as far as can be without reading its layers."""

    config: bytes
    diff_ids: list[str]
    layers: list[_ArchivedLayer]
    names: list[str] = field(default_factory=list)
    manifest: bytes | None = None  # OCI: the manifest, byte for byte, kept with the image


def load_archive(store: ImageStore, source: Path, name: str | None = None) -> list[Image]:
    """Load every image in ``source``: a docker archive or an OCI image layout, as a
    directory or a tar (plain or gzip). See the module docstring for what is checked.
    ``name``: the repository for an OCI layout's images that are named by a tag alone."""
    if name is not None:
        reference = parse_reference(name)
        if reference.digest or ":" in name.rpartition("/")[2]:
            raise PydockError(f"--name {name!r}: a repository, without a tag or digest")
    budget = ExpansionBudget()
    with open_archive(store, source, budget) as archive:
        if archive.exists("manifest.json"):
            planned = _plan_docker(archive)
        elif archive.exists("index.json"):
            planned = _plan_oci(archive, name)
        else:
            raise PydockError(f"{source}: neither a docker archive (no manifest.json) nor an "
                              "OCI image layout (no index.json)")
        imported: list[str] = []
        kept = _KeptBlobs(BlobStore(store.root))
        try:
            _import_layers(store, archive, planned, imported, budget, kept)
            images = store.add_raw_images([(p.config, p.names) for p in planned])
            kept.record(store.locked(), [(i.id, p.config, p.manifest,
                                          [layer.path for layer in p.layers])
                                         for p, i in zip(planned, images, strict=True)])
            return images
        except BaseException:
            store.remove_unused_layers(imported)
            kept.discard()
            raise


def _plan_docker(archive: ArchiveFiles) -> list[_Planned]:
    manifest = _expect(archive.read_json("manifest.json"), list, "manifest.json")
    if not 0 < len(manifest) <= _MAX_IMAGES:
        raise PydockError(f"manifest.json lists {len(manifest)} images")
    planned = []
    for number, entry in enumerate(manifest):
        what = f"manifest.json image {number}"
        entry = _expect(entry, dict, what)
        config_path = archive_path(entry.get("Config"), f"{what} Config")
        config = archive.read_bytes(config_path)
        named = _DIGEST_NAMED.fullmatch(config_path)
        if named and hashlib.sha256(config).hexdigest() != named[1]:
            raise PydockError(f"config {config_path}: content does not match its digest name")
        diff_ids = config_diff_ids(config, config_path)
        paths = _expect(entry.get("Layers"), list, f"{what} Layers")
        if len(paths) != len(diff_ids):
            raise PydockError(f"{what}: {len(paths)} layers but its config has "
                              f"{len(diff_ids)} diff_ids")
        tags = _expect(entry.get("RepoTags") or [], list, f"{what} RepoTags")
        names = [normalize_reference(_expect(t, str, f"{what} RepoTags")) for t in tags]
        layers = [_ArchivedLayer(archive_path(p, f"{what} Layers")) for p in paths]
        planned.append(_Planned(config, diff_ids, layers, names))
    return planned


def _plan_oci(archive: ArchiveFiles, repository: str | None) -> list[_Planned]:
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
        name = _oci_name(descriptor, repository)
        if name and name not in planned.names:
            planned.names.append(name)
    return list(by_id.values())


def _plan_oci_manifest(archive: ArchiveFiles, descriptor: dict[str, Any], depth: int) -> _Planned:
    digest, document = _read_blob_json(archive, descriptor, "manifest")
    raw = archive.read_bytes(blob_path(digest))
    media_type = document.get("mediaType") or descriptor.get("mediaType")
    if media_type is not None and not isinstance(media_type, str):
        raise PydockError(f"manifest {digest}: mediaType {media_type!r} is not a string")
    if media_type in INDEX_TYPES or (media_type is None and "manifests" in document):
        if depth >= _MAX_INDEX_DEPTH:
            raise PydockError(f"index {digest}: indexes nested too deeply")
        return _plan_oci_manifest(archive, _pick_platform(document, digest), depth + 1)
    if media_type not in MANIFEST_TYPES and not (media_type is None and "config" in document):
        raise PydockError(f"manifest {digest}: unsupported media type {media_type!r}")
    config_descriptor = _expect(document.get("config"), dict, f"manifest {digest} config")
    config_digest = _descriptor_digest(config_descriptor, f"manifest {digest} config")
    config = archive.read_bytes(blob_path(config_digest))
    _check_blob(config, config_descriptor, f"config {config_digest}")
    diff_ids = config_diff_ids(config, f"config {config_digest}")
    layers = []
    for number, value in enumerate(_expect(document.get("layers"), list,
                                           f"manifest {digest} layers")):
        what = f"manifest {digest} layers[{number}]"
        layer = _expect(value, dict, what)
        if "zstd" in str(layer.get("mediaType", "")):
            raise PydockError(f"{what}: zstd-compressed layers are not supported")
        layer_digest = _descriptor_digest(layer, what)
        layers.append(_ArchivedLayer(blob_path(layer_digest), layer_digest,
                             _descriptor_size(layer, what)))
    if len(layers) != len(diff_ids):
        raise PydockError(f"manifest {digest}: {len(layers)} layers but its config has "
                          f"{len(diff_ids)} diff_ids")
    return _Planned(config, diff_ids, layers, manifest=raw)


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


def _oci_name(descriptor: dict[str, Any], repository: str | None) -> str | None:
    annotations = descriptor.get("annotations")
    if not isinstance(annotations, dict):
        annotations = {}
    for key in (CONTAINERD_NAME, REF_NAME):
        name = annotations.get(key)
        # A bare tag (no '/' or ':') names no repository: see the module docstring.
        if isinstance(name, str) and ("/" in name or ":" in name):
            return normalize_reference(name)
    if repository is None:
        return None
    tag = annotations.get(REF_NAME)
    return normalize_reference(f"{repository}:{tag if isinstance(tag, str) else 'latest'}")


def _import_layers(store: ImageStore, archive: ArchiveFiles, planned: list[_Planned],
                   imported: list[str], budget: ExpansionBudget, kept: _KeptBlobs) -> None:
    done: dict[str, str] = {}
    total = len({layer.path for image in planned for layer in image.layers})
    for image in planned:
        for layer, expected in zip(image.layers, image.diff_ids, strict=True):
            if layer.path not in done:
                label = f"loading layer {len(done) + 1}/{total}"
                done[layer.path] = _import_layer(store, archive, layer, label, imported,
                                                 budget, kept)
            if done[layer.path] != expected:
                raise PydockError(f"layer {layer.path}: its content (sha256:"
                                  f"{done[layer.path].removeprefix('sha256:')}) does not match "
                                  f"the config's diff_id {expected}")


def _import_layer(store: ImageStore, archive: ArchiveFiles, layer: _ArchivedLayer, label: str,
                  imported: list[str], budget: ExpansionBudget, kept: _KeptBlobs) -> str:
    raw, size = archive.open(layer.path)
    if not archive.decompressed:
        # Blobs of a compressed archive were charged as its output, not input: else a gzip'd
        # archive of gzip'd layers would multiply the two ratios.
        budget.add_input(size)
    if layer.size is not None and size != layer.size:
        raw.close()
        raise PydockError(f"layer {layer.path}: {size} bytes where its descriptor says "
                          f"{layer.size}")
    with kept.blobs.writer(None) as (copy, _hasher):
        # The blob as it is in the archive goes to the blob store as it is read: saved or
        # pushed again, it keeps its digest and the image its id.
        hashing = _HashingBlobReader(ProgressReader(raw, label), copy)
        with io.BufferedReader(hashing, _CHUNK) as buffered:
            stream = gunzipped(buffered, f"layer {layer.path}", budget)
            try:
                diff_id = store.import_layer(stream)
            except PydockError as e:
                if str(e).startswith(f"layer {layer.path}: "):
                    raise  # the decompression budget names the layer already
                raise PydockError(f"layer {layer.path}: {e}") from e
            imported.append(diff_id)
            while buffered.read(_CHUNK):
                pass
            magic = hashing.magic
    blob_digest = f"sha256:{hashing.sha256.hexdigest()}"
    if layer.digest is not None and blob_digest != layer.digest:
        raise PydockError(f"layer {layer.path}: content does not match its digest")
    kept.added(layer.path, blob_digest, hashing.size, magic)
    return diff_id


def _read_blob_json(archive: ArchiveFiles, descriptor: dict[str, Any],
                    what: str) -> tuple[str, dict[str, Any]]:
    digest = _descriptor_digest(descriptor, what)
    data = archive.read_bytes(blob_path(digest))
    _check_blob(data, descriptor, f"{what} {digest}")
    return digest, _expect(parse_json(data, f"{what} {digest}"), dict, f"{what} {digest}")


def _check_blob(data: bytes, descriptor: dict[str, Any], what: str) -> None:
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != descriptor["digest"]:
        raise PydockError(f"{what}: content does not match its digest")
    if len(data) != _descriptor_size(descriptor, what):
        raise PydockError(f"{what}: size does not match its descriptor")


def _descriptor_digest(descriptor: dict[str, Any], what: str) -> str:
    digest = descriptor.get("digest")
    if not isinstance(digest, str) or not is_digest(digest):
        raise PydockError(f"{what}: digest {digest!r} is not a sha256 digest")
    return digest


def _descriptor_size(descriptor: dict[str, Any], what: str) -> int:
    size = descriptor.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise PydockError(f"{what}: invalid size {size!r}")
    return size


def config_diff_ids(config: bytes, what: str) -> list[str]:
    document = _expect(parse_json(config, what), dict, what)
    _check_run_config(document, what)
    rootfs = _expect(document.get("rootfs"), dict, f"{what} rootfs")
    diff_ids = _expect(rootfs.get("diff_ids"), list, f"{what} rootfs.diff_ids")
    if len(diff_ids) > MAX_LAYERS:
        raise PydockError(f"{what}: {len(diff_ids)} layers, more than the {MAX_LAYERS} "
                          "overlay can stack")
    for diff_id in diff_ids:
        if not isinstance(diff_id, str) or not is_digest(diff_id):
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


def _expect(value: object, kind: type[_T], what: str) -> _T:
    if not isinstance(value, kind):
        raise PydockError(f"{what}: expected a JSON {_JSON_KINDS.get(kind, kind.__name__)}")
    return value


_JSON_KINDS: dict[type, str] = {dict: "object", list: "array", str: "string"}


class _HashingBlobReader(io.RawIOBase):
    """A layer blob as stored in the archive (compressed or not), hashed as it is read to
    check its OCI digest. It owns the stream: closing it closes the blob."""

    def __init__(self, stream: io.RawIOBase, copy: IO[bytes]) -> None:
        super().__init__()
        self._stream = stream
        self._copy = copy
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.magic = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer)) or b""
        self.sha256.update(data)
        self._copy.write(data)
        if not self.size:
            self.magic = bytes(data[:4])
        self.size += len(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._stream.close()
        super().close()
