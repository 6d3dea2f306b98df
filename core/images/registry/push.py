"""``pydock push``: an image from the store to a registry, its manifest digest kept.

An image that was pulled, loaded or imported (or the default image) is pushed as it came:
the manifest stored with it, byte for byte, and the blobs it names
(:mod:`pydock.core.images.blobs`), so the registry ends up with the same manifest digest and
image id. An image made here (``commit``, an xz or bzip2 ``image import``) gets a manifest
once: each layer that another image's kept blobs hold is sent as those blobs; the others are
regenerated as tars (:func:`pydock.core.layers.pack.write_layer_tar`, deterministic) and
gzip'd into the blob store; the next push reuses the manifest.

For each blob, as docker does: ``HEAD`` first (the registry has it: skipped); else a
cross-repository mount from a repository of the same registry the image came from or went
to (201: done without a byte sent); else an upload, in one ``PUT`` or, with ``chunk_size``,
in ``PATCH`` chunks and a closing ``PUT``. The manifest goes last, under the tag, and the
registry's digest for it must be ours.
"""

from __future__ import annotations

import gzip
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any

import httpx

from pydock.core.errors import PydockError
from pydock.core.images.blobs import BlobStore
from pydock.core.images.oci import OCI_CONFIG, OCI_MANIFEST
from pydock.core.images.registry.client import Registry, RegistryError
from pydock.core.images.registry.progress import Progress
from pydock.core.images.store import Image, ImageStore, parse_reference

OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_CHUNK = 1 << 20
_WORKERS = 4


@dataclass
class Pushed:
    tag: str
    digest: str
    size: int  # of the manifest, as docker prints it
    warning: str | None = None


def push(store: ImageStore, ref: str, *, tls_verify: bool = True,
         chunk_size: int = 0) -> Pushed:
    reference = parse_reference(ref)
    if reference.digest:
        raise PydockError(f"cannot push {ref}: push names a tag, not a digest")
    image = store.resolve(ref)
    blobs = BlobStore(store.root)
    # Repositories of the same registry that have these blobs, for cross-repository mounts.
    sources = sorted({parse_reference(d).path for d in image.digests
                      if parse_reference(d).host == reference.host
                      and parse_reference(d).path != reference.path})[:3]
    progress = Progress("uploading")
    # Connected (and authenticated) first: a registry that refuses costs no layer work.
    with Registry(reference.host, reference.path, tls_verify=tls_verify, actions="pull,push",
                  extra_scopes=tuple(f"repository:{s}:pull" for s in sources)) as registry:
        manifest_digest, rewritten = _manifest_for(store, blobs, image)
        manifest = blobs.read(manifest_digest)
        document = json.loads(manifest)
        descriptors = [*document["layers"], document["config"]]
        unique = list({d["digest"]: d for d in descriptors}.values())
        # Concurrently, as pull: each blob is its own upload session.
        with ThreadPoolExecutor(_WORKERS, thread_name_prefix="push") as pool:
            for _ in pool.map(lambda d: _push_blob(registry, blobs, d, sources, chunk_size,
                                                   progress), unique):
                pass
        response = registry.request(
            "PUT", f"manifests/{reference.tag}", content=manifest,
            headers={"Content-Type": document.get("mediaType") or OCI_MANIFEST})
        if response.status_code not in (200, 201):
            raise registry.fail(response, f"manifest {reference}")
        announced = response.headers.get("docker-content-digest")
        if announced and announced != manifest_digest:
            raise RegistryError(f"{reference}: the registry stored the manifest as {announced}"
                                f", not {manifest_digest}")
    if not rewritten:
        store.add_digest(image.id, f"{reference.repository}@{manifest_digest}")
    if not progress.enabled:
        print(progress.summary(f"pushed {reference.familiar}", len(descriptors)),
              file=sys.stderr)
    else:
        progress.finish()
    warning = None
    if rewritten:
        warning = (f"the layers of {image.id[:19]} do not regenerate byte for byte: pushed "
                   f"with the regenerated ones, as image {document['config']['digest'][:19]}")
    return Pushed(reference.tag or "latest", manifest_digest, len(manifest), warning)


def _manifest_for(store: ImageStore, blobs: BlobStore, image: Image) -> tuple[str, bool]:
    """A stored manifest of ``image`` whose blobs are all here, made if there is none; and
    whether it describes a rewritten config (the layers did not regenerate to the
    image's diff_ids, so the pushed image has another id, as ``image save`` says)."""
    for digest in blobs.manifests_of(image.id):
        document = json.loads(blobs.read(digest))
        if all(blobs.has(d["digest"]) for d in [*document["layers"], document["config"]]):
            return digest, False
    layers = []
    diff_ids = []
    others = {i.id: i.diff_ids for i in store.all_images()}
    known = blobs.layer_blobs(list(others), others)
    for diff_id in image.diff_ids:
        if diff_id in known:  # a layer pulled or loaded with another image: as it came
            layers.append(known[diff_id])
            diff_ids.append(diff_id)
            continue
        descriptor, regenerated = _gzip_layer(store, blobs, diff_id)
        layers.append(descriptor)
        diff_ids.append(regenerated)
    config = (store.configs_dir / f"{image.id.removeprefix('sha256:')}.json").read_bytes()
    rewritten = diff_ids != image.diff_ids
    if rewritten:
        document = json.loads(config)
        document["rootfs"]["diff_ids"] = diff_ids
        config = json.dumps(document, separators=(",", ":")).encode()
    config_digest = blobs.add_bytes(config)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
        "layers": layers,
    }, separators=(",", ":")).encode()
    digest = blobs.add_bytes(manifest)
    if not rewritten:
        with store.locked():
            blobs.add_manifest(image.id, digest)
    return digest, rewritten


def _gzip_layer(store: ImageStore, blobs: BlobStore, diff_id: str) -> tuple[dict[str, Any], str]:
    """The layer as a gzip'd tar in the blob store: its descriptor and its tar's digest."""
    from pydock.core.layers.pack import write_layer_tar

    layer = store.layer_path(diff_id)
    if not layer.is_dir():
        raise PydockError(f"layer {diff_id} is missing from the store")
    # Level 6 and no name or time in the header, as Go's gzip writes layers: the same tree
    # gives the same blob, push after push.
    with blobs.writer(None) as (file, hasher), gzip.GzipFile(
            fileobj=file, mode="wb", compresslevel=6, mtime=0, filename="") as compressed:
        tar_hex = write_layer_tar(compressed, layer)  # type: ignore[arg-type]
    digest = f"sha256:{hasher.sha256.hexdigest()}"
    return {"mediaType": OCI_LAYER_GZIP, "digest": digest, "size": hasher.size}, \
        f"sha256:{tar_hex}"


def _push_blob(registry: Registry, blobs: BlobStore, descriptor: dict[str, Any],
               sources: list[str], chunk_size: int, progress: Progress) -> None:
    digest, size = descriptor["digest"], descriptor["size"]
    response = registry.request("HEAD", f"blobs/{digest}")
    if response.status_code == 200:
        progress.skipped += 1
        progress.line(digest, "already there", now=True)
        return
    location = None
    for source in sources:
        response = registry.request("POST", "blobs/uploads/",
                                    params={"mount": digest, "from": source})
        if response.status_code == 201:
            progress.skipped += 1
            progress.line(digest, f"mounted from {source}", now=True)
            return
        if response.status_code == 202:
            location = response.headers.get("location")
            break
    if location is None:
        response = registry.request("POST", "blobs/uploads/")
        if response.status_code != 202 or not response.headers.get("location"):
            raise registry.fail(response, f"upload of blob {digest}")
        location = response.headers["location"]
    with open(blobs.path(digest), "rb") as file:
        if chunk_size:
            location = _patch_chunks(registry, location, file, digest, size, chunk_size,
                                     progress)
            body: Any = b""
        else:
            body = _reading(file, digest, size, progress)
        # Merged into the location's own query (its upload state), never replacing it.
        url = str(httpx.URL(_join(registry, location)).copy_merge_params({"digest": digest}))
        response = registry.request("PUT", url, content=body,
                                    headers={"Content-Type": "application/octet-stream"})
    if response.status_code not in (201, 204):
        raise registry.fail(response, f"upload of blob {digest}")
    progress.line(digest, "pushed", now=True)


def _patch_chunks(registry: Registry, location: str, file: IO[bytes], digest: str, size: int,
                  chunk_size: int, progress: Progress) -> str:
    start = 0
    while True:
        chunk = file.read(chunk_size)
        if not chunk:
            return location
        end = start + len(chunk) - 1
        response = registry.request("PATCH", _join(registry, location), content=chunk,
                                    headers={"Content-Type": "application/octet-stream",
                                             "Content-Range": f"{start}-{end}"})
        if response.status_code != 202 or not response.headers.get("location"):
            raise registry.fail(response, f"upload of blob {digest} (chunk at {start})")
        location = response.headers["location"]
        start = end + 1
        progress.add(len(chunk))
        progress.advance(digest, start, size)


def _reading(file: IO[bytes], digest: str, size: int, progress: Progress) -> Any:
    def chunks() -> Any:
        done = 0
        while chunk := file.read(_CHUNK):
            done += len(chunk)
            progress.add(len(chunk))
            progress.advance(digest, done, size)
            yield chunk

    return chunks()


def _join(registry: Registry, location: str) -> str:
    return str(httpx.URL(registry.base).join(location))


