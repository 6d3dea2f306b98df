"""``pydock image save``: an image from the store as a docker archive or an OCI layout tar.

An image that was pulled or loaded has its blobs kept as they came
(:mod:`pydock.core.images.blobs`): saving writes those (an OCI layout: the blobs and the
manifest verbatim; a docker archive: each blob decompressed, which is the layer tar its
diff_id names), so the saved image keeps its id, and an OCI layout its manifest digest.

Otherwise the store has only extracted trees, and saving regenerates each layer tar. Tar bytes
are not canonical: a layer made by another tool regenerates to a different digest. The saved
config then carries the regenerated ``diff_ids`` (and so the saved image has a new id), which
keeps the archive consistent for every tool that loads it; the content is the same. Images
that pydock saved and loaded back regenerate to the same bytes and keep their id.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import secrets
import shutil
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from pydock.core.errors import PydockError
from pydock.core.images.blobs import BlobStore
from pydock.core.images.oci import (
    CONTAINERD_NAME,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
    OCI_LAYOUT,
    OCI_MANIFEST,
    REF_NAME,
    blob_path,
)
from pydock.core.images.store import Image, ImageStore, normalize_reference, parse_reference


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
            writer = _ArchiveWriter(file)
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
                  writer: _ArchiveWriter) -> None:
    diff_ids = _write_layers(store, image, writer, lambda hex_: f"{hex_}.tar")
    config = _config_for(image, store, diff_ids)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    writer.add_bytes(config_name, config)
    manifest = [{"Config": config_name, "RepoTags": names,
                 "Layers": [f"{d.removeprefix('sha256:')}.tar" for d in diff_ids]}]
    writer.add_bytes("manifest.json", json.dumps(manifest).encode())


def _write_oci(store: ImageStore, image: Image, names: list[str], writer: _ArchiveWriter) -> None:
    writer.add_bytes("oci-layout", json.dumps(OCI_LAYOUT).encode())
    writer.add_directory("blobs")
    writer.add_directory("blobs/sha256")
    kept = _kept_manifest(store, image)
    if kept is not None:
        # The blobs and manifest as they came: the same manifest digest and image id.
        blobs, manifest, document = kept
        for layer in document["layers"]:
            digest = layer["digest"]
            if blob_path(digest) not in writer.sizes:
                writer.add_stream(functools.partial(_copy_blob, blobs.path(digest), digest),
                                  lambda hex_: f"blobs/sha256/{hex_}")
        writer.add_blob(blobs.read(document["config"]["digest"]), OCI_CONFIG)
        descriptor = writer.add_blob(manifest, document.get("mediaType") or OCI_MANIFEST)
    else:
        diff_ids = _write_layers(store, image, writer, lambda hex_: f"blobs/sha256/{hex_}")
        config = _config_for(image, store, diff_ids)
        layers = [{"mediaType": OCI_LAYER, "digest": d,
                   "size": writer.sizes[blob_path(d)]} for d in diff_ids]
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": writer.add_blob(config, OCI_CONFIG), "layers": layers,
        }).encode()
        descriptor = writer.add_blob(manifest, OCI_MANIFEST)
    # ref.name is the tag alone, as skopeo and containerd write it (so `umoci unpack --image
    # DIR:TAG` and `skopeo copy oci:DIR:TAG` find it); the full name is containerd's.
    entries = [{**descriptor, "annotations": {
        REF_NAME: parse_reference(name).tag or "latest",
        CONTAINERD_NAME: str(parse_reference(name))}} for name in names] or [descriptor]
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    writer.add_bytes("index.json", json.dumps(index).encode())


def _kept_manifest(store: ImageStore, image: Image) -> tuple[BlobStore, bytes,
                                                              dict[str, Any]] | None:
    """A manifest kept with the image (pulled or loaded) whose blobs are all here."""
    blobs = BlobStore(store.root)
    for digest in blobs.manifests_of(image.id):
        manifest = blobs.read(digest)
        document = json.loads(manifest)
        if all(blobs.has(d["digest"]) for d in [*document["layers"], document["config"]]):
            return blobs, manifest, document
    return None


def _copy_blob(path: Path, digest: str, out: BinaryIO) -> str:
    with open(path, "rb") as blob:
        shutil.copyfileobj(blob, out, 1 << 20)
    return digest.removeprefix("sha256:")


def _unpacked_blob(path: Path, out: BinaryIO) -> str:
    """Write the kept blob at ``path`` decompressed (a layer tar); its sha256, the diff_id."""
    from pydock.core.layers.budget import ExpansionBudget
    from pydock.core.layers.compression import decompressed_layer

    sha256 = hashlib.sha256()
    with open(path, "rb") as blob:
        budget = ExpansionBudget()
        budget.add_input(os.fstat(blob.fileno()).st_size)
        stream = decompressed_layer(blob, str(path), budget)
        while chunk := stream.read(1 << 20):
            sha256.update(chunk)
            out.write(chunk)
    return sha256.hexdigest()


def _write_layers(store: ImageStore, image: Image, writer: _ArchiveWriter,
                  name_of: Callable[[str], str]) -> list[str]:
    """Each layer tar into the archive: from the blobs kept with the image (as pulled or
    loaded) when there are, else regenerated; its diff_ids, as written."""
    from pydock.core.layers.pack import write_layer_tar

    kept = _kept_manifest(store, image)
    if kept is not None:
        blobs, _manifest, document = kept
        written: dict[str, str] = {}
        for number, layer in enumerate(document["layers"], 1):
            if layer["digest"] not in written:
                _show_progress(f"saving layer {number}/{len(document['layers'])}")
                written[layer["digest"]] = "sha256:" + writer.add_stream(
                    functools.partial(_unpacked_blob, blobs.path(layer["digest"])), name_of)
        _show_progress(None)
        diff_ids = [written[layer["digest"]] for layer in document["layers"]]
        if diff_ids == image.diff_ids:
            return diff_ids
        raise PydockError(f"image {image.id}: its kept blobs do not match its layers")

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


class _ArchiveWriter:
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
        self.add_bytes(blob_path(digest), data)
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
