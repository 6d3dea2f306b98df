"""``pydock pull``: an image from a registry into the store, its digests and id kept.

The steps: the manifest for the tag or digest (an index or manifest list is narrowed to the
wanted platform, ``--platform`` or this machine's); its config; then, concurrently, each layer
the store lacks: its blob downloaded unless the blob store has it, hashed while it streams
and renamed into ``blobs/sha256/`` only when it matches its digest, then extracted
(plain, gzip or zstd) and checked against the config's ``diff_ids``. Last, under the store's
lock, the config is stored verbatim (the image id is its sha256, the one docker shows), the
tag and ``name@<digest>`` point at it, and the manifests are recorded for ``push`` and
``save``.

Everything the registry sends is untrusted: manifests are capped at 4 MiB and must hash to
the digest they were asked by (or that the registry announced), every blob to its
descriptor's digest and size, every layer to its diff_id, and extraction keeps its rules
(:mod:`pydock.core.layers.unpack`). A refusal or Ctrl-C leaves no half-written blob (scratch
names) and no layer that no image uses; the blobs already verified stay for the next pull.
"""

from __future__ import annotations

import hashlib
import json
import platform as host_platform
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from pydock.core import failpoints
from pydock.core.errors import PydockError
from pydock.core.images.blobs import BlobStore
from pydock.core.images.load import config_diff_ids
from pydock.core.images.oci import INDEX_TYPES, MANIFEST_TYPES
from pydock.core.images.registry.client import Registry, RegistryError
from pydock.core.images.registry.progress import Progress
from pydock.core.images.store import Image, ImageStore, parse_reference
from pydock.core.layers.budget import ExpansionBudget
from pydock.core.layers.compression import READ_ERRORS, decompressed_layer, error_reason

ACCEPT = ", ".join([*sorted(MANIFEST_TYPES), *sorted(INDEX_TYPES)])
LAYER_TYPES = {
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
}
_WORKERS = 4
_CHUNK = 1 << 20


class Cancelled(Exception):
    """Another layer failed, or the user pressed Ctrl-C: stop this one."""


@dataclass
class Pulled:
    image: Image
    digest: str  # what the reference resolved to: the index's digest for a multi-arch image
    name: str  # the name given to it, as docker prints it
    fresh: bool  # anything new was stored
    summary: str  # one line: blobs, what was there already, bytes, time

    @property
    def status(self) -> str:
        """docker pull's last lines but the id: the digest, and what the pull changed."""
        done = "Downloaded newer image" if self.fresh else "Image is up to date"
        return f"Digest: {self.digest}\nStatus: {done} for {self.name}"


def machine_platform() -> str:
    machine = host_platform.machine()
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm/v7", "armv6l": "arm/v6",
            "i686": "386"}.get(machine, machine)
    return f"linux/{arch}"


def pull(store: ImageStore, ref: str, *, wanted_platform: str | None = None,
         tls_verify: bool = True) -> Pulled:
    reference = parse_reference(ref)
    wanted = _parse_platform(wanted_platform or machine_platform())
    blobs = BlobStore(store.root)
    with Registry(reference.host, reference.path, tls_verify=tls_verify) as registry:
        top_digest, document = fetch_manifest(registry, reference.digest or reference.tag or "")
        manifest_digest, index = top_digest, None
        if _is_index(document):
            index = document
            descriptor = _pick(document, wanted, top_digest)
            manifest_digest, document = fetch_manifest(registry, descriptor["digest"])
            if _is_index(document):
                raise RegistryError(f"index {top_digest}: names another index for "
                                    f"{'/'.join(wanted)}")
        layers, config_descriptor = _layers_of(document, manifest_digest)
        config = _fetch_small_blob(registry, blobs, config_descriptor)
        diff_ids = config_diff_ids(config, f"config {config_descriptor['digest']}")
        if len(diff_ids) != len(layers):
            raise RegistryError(f"manifest {manifest_digest}: {len(layers)} layers but its "
                                f"config has {len(diff_ids)} diff_ids")
        progress = Progress("downloading")
        imported = _fetch_layers(store, blobs, registry, layers, diff_ids, progress)
        blobs.add_bytes(_raw(document), manifest_digest)
        if index is not None:
            blobs.add_bytes(_raw(index), top_digest)
    name = reference.familiar if not reference.digest else None
    try:
        [image] = store.add_raw_images([(config, [name] if name else [])])
        with store.locked():
            blobs.add_manifest(image.id, manifest_digest)
        store.add_digest(image.id, f"{reference.repository}@{top_digest}")
    except BaseException:
        store.remove_unused_layers(imported)
        raise
    image = store.resolve(image.id)
    if progress.enabled:
        progress.finish()
    shown = name or f"{reference.repository}@{top_digest}"
    return Pulled(image, top_digest, shown, bool(imported) or progress.moved > 0,
                  progress.summary(f"pulled {shown}", len(layers)))


def fetch_manifest(registry: Registry, tag_or_digest: str) -> tuple[str, dict[str, Any]]:
    """(digest, document) of the manifest or index ``tag_or_digest`` names, verified."""
    what = f"{registry.host}/{registry.repository}:{tag_or_digest}".replace(":sha256:",
                                                                          "@sha256:")
    with registry.stream("GET", f"manifests/{tag_or_digest}",
                         headers={"Accept": ACCEPT}) as response:
        if response.status_code != 200:
            raise registry.fail(response, f"manifest {what}")
        body = registry.read_limited(response, f"manifest {what}")
        announced = response.headers.get("docker-content-digest")
    digest = f"sha256:{hashlib.sha256(body).hexdigest()}"
    expected = tag_or_digest if tag_or_digest.startswith("sha256:") else announced
    if expected and expected.startswith("sha256:") and expected != digest:
        raise RegistryError(f"manifest {what}: content does not match its digest {expected}")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"manifest {what}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise RegistryError(f"manifest {what}: not a JSON object")
    document["\0raw"] = body  # the bytes as they came, for the blob store
    return digest, document


def _raw(document: dict[str, Any]) -> bytes:
    raw = document["\0raw"]
    assert isinstance(raw, bytes)
    return raw


def _is_index(document: dict[str, Any]) -> bool:
    media_type = document.get("mediaType")
    return media_type in INDEX_TYPES or (media_type is None and "manifests" in document)


def _parse_platform(text: str) -> tuple[str, ...]:
    parts = tuple(text.split("/"))
    if not 2 <= len(parts) <= 3 or not all(parts):
        raise PydockError(f"invalid platform {text!r}: expected OS/ARCH[/VARIANT]")
    return parts


def _pick(index: dict[str, Any], wanted: tuple[str, ...], digest: str) -> dict[str, Any]:
    """The index's manifest for ``wanted`` (os, architecture[, variant])."""
    manifests = index.get("manifests")
    if not isinstance(manifests, list):
        raise RegistryError(f"index {digest}: no manifests list")
    offered = []
    for candidate in manifests:
        if not isinstance(candidate, dict) or not isinstance(candidate.get("platform"), dict):
            continue
        platform = candidate["platform"]
        have = (platform.get("os"), platform.get("architecture"))
        offered.append("/".join(str(p) for p in have if p))
        if have != wanted[:2]:
            continue
        if len(wanted) == 3 and platform.get("variant") not in (wanted[2], None):
            continue
        if not isinstance(candidate.get("digest"), str):
            raise RegistryError(f"index {digest}: a manifest without a digest")
        return candidate
    raise RegistryError(f"index {digest}: no image for {'/'.join(wanted)} (it has "
                        f"{', '.join(sorted(set(offered))) or 'none'})")


def _layers_of(document: dict[str, Any], digest: str) -> tuple[list[dict[str, Any]],
                                                             dict[str, Any]]:
    media_type = document.get("mediaType")
    if media_type not in MANIFEST_TYPES and not (media_type is None and "config" in document):
        raise RegistryError(f"manifest {digest}: unsupported media type {media_type!r} "
                            "(docker schema 1 is not supported)")
    config = document.get("config")
    layers = document.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise RegistryError(f"manifest {digest}: no config or layers")
    _check_descriptor(config, f"manifest {digest} config")
    for number, layer in enumerate(layers):
        what = f"manifest {digest} layers[{number}]"
        if not isinstance(layer, dict):
            raise RegistryError(f"{what}: not a JSON object")
        _check_descriptor(layer, what)
        if layer.get("mediaType") not in LAYER_TYPES:
            raise RegistryError(f"{what}: unsupported layer type {layer.get('mediaType')!r}")
    return layers, config


def _check_descriptor(descriptor: dict[str, Any], what: str) -> None:
    from pydock.core.ids import is_digest

    digest, size = descriptor.get("digest"), descriptor.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise RegistryError(f"{what}: digest {digest!r} is not a sha256 digest")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise RegistryError(f"{what}: invalid size {size!r}")


def _fetch_small_blob(registry: Registry, blobs: BlobStore, descriptor: dict[str, Any]) -> bytes:
    digest = descriptor["digest"]
    if not blobs.has(digest):
        with registry.stream("GET", f"blobs/{digest}") as response:
            if response.status_code != 200:
                raise registry.fail(response, f"config {digest}")
            body = registry.read_limited(response, f"config {digest}")
        blobs.add_bytes(body, digest)
    return blobs.read(digest)


def _fetch_layers(store: ImageStore, blobs: BlobStore, registry: Registry,
                  layers: list[dict[str, Any]], diff_ids: list[str],
                  progress: Progress) -> list[str]:
    """Download and extract, concurrently, the layers the store lacks; the diff_ids this
    pull extracted (to undo on failure)."""
    imported: list[str] = []
    stop = threading.Event()
    todo = {d: layer for layer, d in zip(layers, diff_ids, strict=True)
            if not store.layer_path(d).is_dir()}
    progress.skipped = len(layers) - len(todo)
    budget = ExpansionBudget()

    def one(diff_id: str, layer: dict[str, Any]) -> None:
        digest = layer["digest"]
        if not blobs.has(digest):
            _download(registry, blobs, layer, progress, stop)
            failpoints.reached("pull.blob-verified")
        else:
            progress.skipped += 1
        if stop.is_set():
            raise Cancelled()
        progress.line(digest, "extracting", now=True)
        with open(blobs.path(digest), "rb") as file:
            budget.add_input(layer["size"])
            try:
                stream = decompressed_layer(file, f"layer {digest}", budget)
                got = store.import_layer(stream)
            except PydockError as exc:
                raise PydockError(f"layer {digest}: {exc}") from None
            except (*READ_ERRORS, _zstd_error()) as exc:
                raise PydockError(f"layer {digest}: {error_reason(exc)}") from None
        imported.append(got)
        if got != diff_id:
            raise RegistryError(f"layer {digest}: its content ({got}) does not match the "
                                f"config's diff_id {diff_id}")
        progress.line(digest, "done", now=True)

    try:
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="pull") as pool:
            futures = [pool.submit(one, d, layer) for d, layer in todo.items()]
            try:
                done, _pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = [e for f in done if (e := f.exception()) is not None]
                if failed:
                    # The first real failure, not a layer that stopped because of it.
                    raise next((e for e in failed if not isinstance(e, Cancelled)), failed[0])
            finally:
                stop.set()
                for future in futures:
                    future.cancel()
    except BaseException:
        store.remove_unused_layers(imported)
        raise
    return imported


def _zstd_error() -> type[Exception]:
    """zstandard's error type, without importing it for a pull that has no zstd layer."""
    import sys

    module = sys.modules.get("zstandard")
    return module.ZstdError if module is not None else OSError


def _download(registry: Registry, blobs: BlobStore, layer: dict[str, Any], progress: Progress,
              stop: threading.Event) -> None:
    digest, size = layer["digest"], layer["size"]
    with registry.stream("GET", f"blobs/{digest}") as response:
        if response.status_code != 200:
            raise registry.fail(response, f"blob {digest}")
        with blobs.writer(digest, size) as (file, hasher):
            for chunk in response.iter_raw(_CHUNK):
                if stop.is_set():
                    raise Cancelled()
                file.write(chunk)
                progress.add(len(chunk))
                if hasher.size > size:
                    raise RegistryError(f"blob {digest}: more than the {size} bytes its "
                                        "descriptor says")
                progress.advance(digest, hasher.size, size)
