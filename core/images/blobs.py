"""The blob store: registry blobs kept as they came, so that digests and image ids survive.

Layout::

    blobs/sha256/<hex>          a manifest, an index, a config or a compressed layer blob,
                                byte for byte as a registry served it; named by its digest
    blobs/.tmp-*                a blob being downloaded or written (swept once its owner is
                                gone, see :mod:`pydock.core.leftovers`)
    images/manifests/<id hex>   JSON list of the digests of the manifests that describe image
                                <id> (one per source: a registry's gzip, another's zstd)

Why keep the compressed blobs beside the extracted layers (as containerd's content store
does) rather than record enough to rebuild each tar (containers/storage's tar-split): the
manifest digest is the sha256 of a manifest that names each *compressed* blob, and gzip
output differs between implementations and levels, so only the blobs themselves can be
pushed again under the same digests. The cost is the compressed size of every pulled layer
a second time on disk (docs/registry.md has the numbers). A blob is renamed into
``blobs/sha256/`` only once it hashed to its digest, so an interrupted pull leaves a scratch
file that ``prune`` sweeps, and every blob already verified is reused by the next pull.

Blobs go with the last image that names them (:meth:`BlobStore.forget_image`); those no image
names (a pull that failed after verifying some) are collected by ``prune`` once they are an
hour old (:meth:`BlobStore.collect`), so a retry soon after reuses them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pydock.core.errors import PydockError
from pydock.core.files import hidden_name, write_json_atomic
from pydock.core.ids import is_digest
from pydock.core.leftovers import sweep

ORPHAN_AGE = 3600.0
"""How old a blob no image names must be before ``prune`` removes it (seconds)."""


class DigestMismatch(PydockError):
    """A blob's content does not hash to its digest, or is not the size it was said to be."""


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs"
        self.sha256_dir = self.dir / "sha256"
        self.manifests_dir = root / "images" / "manifests"

    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise PydockError(f"{digest!r} is not a sha256 digest")
        return self.sha256_dir / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()

    def add_bytes(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` (checked against ``digest`` when given); its digest."""
        with self.writer(digest, len(data) if digest else None) as (file, _hasher):
            file.write(data)
        return digest or f"sha256:{hashlib.sha256(data).hexdigest()}"

    @contextlib.contextmanager
    def writer(self, digest: str | None, size: int | None = None) -> Iterator[
            tuple[IO[bytes], Any]]:
        """A scratch file and its running sha256, for the caller to write the blob into;
        on leaving, the blob is checked against ``digest`` and ``size`` (when given) and
        renamed into place, or the scratch removed (on an error, a Ctrl-C, a mismatch).
        Without a ``digest`` the blob is stored under the one it hashes to; the caller
        reads it from the hasher."""
        self.sha256_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        scratch = self.dir / hidden_name(".tmp-")
        hasher = _Hasher()
        try:
            with open(scratch, "xb") as file:
                yield hasher.wrap(file), hasher
                file.flush()
                os.fsync(file.fileno())
            actual = f"sha256:{hasher.sha256.hexdigest()}"
            if size is not None and hasher.size != size:
                raise DigestMismatch(f"blob {digest or actual}: {hasher.size} bytes where its "
                                     f"descriptor says {size}")
            if digest is not None and actual != digest:
                raise DigestMismatch(f"blob {digest}: content does not match its digest "
                                     f"(got {actual})")
            if not self.path(actual).exists():
                os.rename(scratch, self.path(actual))
            # else: already stored (by digest, the same bytes), and left as it was
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(scratch)

    # -- which manifests describe which image -----------------------------

    def manifests_of(self, image_id: str) -> list[str]:
        """Digests of the stored manifests that describe image ``image_id``."""
        try:
            digests = json.loads((self.manifests_dir / image_id.removeprefix("sha256:"))
                                 .read_text())
        except (FileNotFoundError, ValueError):
            return []
        return [d for d in digests if isinstance(d, str) and is_digest(d) and self.has(d)]

    def add_manifest(self, image_id: str, digest: str) -> None:
        """Record that the stored manifest ``digest`` describes image ``image_id``. Called
        under the image store's lock."""
        known = self.manifests_of(image_id)
        if digest not in known:
            self.manifests_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            write_json_atomic(self.manifests_dir / image_id.removeprefix("sha256:"),
                              [*known, digest])

    def forget_image(self, image_id: str, keep: set[str]) -> None:
        """Image ``image_id`` is gone: remove its manifests' blobs that no image left
        (``keep``: the ids of the others) names. Called under the image store's lock."""
        doomed = self.closure(self.manifests_of(image_id))
        for other in keep:
            doomed -= self.closure(self.manifests_of(other))
        (self.manifests_dir / image_id.removeprefix("sha256:")).unlink(missing_ok=True)
        for digest in doomed:
            self.path(digest).unlink(missing_ok=True)

    def layer_blobs(self, image_ids: list[str],
                    configs: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
        """diff_id -> the descriptor of a kept blob of that layer, from the manifests kept
        with ``image_ids`` (``configs``: each image's diff_ids). What ``push`` and ``save``
        reuse for an image that shares layers with a pulled or loaded one (a commit on top
        of it), as docker's distribution metadata does."""
        found: dict[str, dict[str, Any]] = {}
        for image_id in image_ids:
            for digest in self.manifests_of(image_id):
                with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                    layers = json.loads(self.read(digest))["layers"]
                    if len(layers) == len(configs[image_id]):
                        for diff_id, layer in zip(configs[image_id], layers, strict=True):
                            if self.has(layer["digest"]):
                                found.setdefault(diff_id, layer)
        return found

    def sweep(self) -> list[str]:
        return [*sweep(self.dir, (".tmp-", ".rm-")), *sweep(self.manifests_dir, (".new-",))]

    def collect(self, image_ids: list[str], older_than: float = ORPHAN_AGE) -> int:
        """Remove the blobs no image's manifest names that are older than ``older_than``
        seconds: what failed or interrupted pulls verified and no pull finished. Younger
        ones stay, for the pull retrying now (or still at work) to reuse. Called by
        ``prune`` under the image store's lock; the number removed."""
        named: set[str] = set()
        for image_id in image_ids:
            named |= self.closure(self.manifests_of(image_id))
        removed = 0
        try:
            names = os.listdir(self.sha256_dir)
        except FileNotFoundError:
            return 0
        now = time.time()
        for name in names:
            path = self.sha256_dir / name
            if name.startswith(".") or f"sha256:{name}" in named:
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - path.lstat().st_mtime > older_than:
                    path.unlink()
                    removed += 1
        return removed

    def closure(self, manifests: list[str]) -> set[str]:
        """The manifests and every blob they name."""
        digests = set(manifests)
        for digest in manifests:
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                document = json.loads(self.read(digest))
                digests.add(document["config"]["digest"])
                digests.update(layer["digest"] for layer in document["layers"])
        return {d for d in digests if isinstance(d, str) and is_digest(d)}


class _Hasher:
    """The sha256 and size of what is written through it."""

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.size = 0

    def wrap(self, file: IO[bytes]) -> IO[bytes]:
        hasher = self

        class _Writer:
            def write(self, data: bytes) -> int:
                hasher.sha256.update(data)
                hasher.size += len(data)
                return file.write(data)

            def __getattr__(self, name: str) -> Any:
                return getattr(file, name)

        return _Writer()  # type: ignore[return-value]


class KeptBlobs:
    """What one ``image load`` keeps: each layer blob as the archive had it, then, once its
    images are stored, a manifest per image naming them (the archive's own, for an OCI
    layout). A load that fails discards the blobs it wrote that no image names."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self._layers: dict[str, dict[str, Any]] = {}  # archive path -> descriptor

    def added(self, path: str, digest: str, size: int, magic: bytes) -> None:
        from pydock.core.images.oci import OCI_LAYER
        from pydock.core.layers.compression import GZIP_MAGIC, ZSTD_MAGIC

        suffix = ("+gzip" if magic.startswith(GZIP_MAGIC) else
                  "+zstd" if magic.startswith(ZSTD_MAGIC) else "")
        self._layers[path] = {"mediaType": OCI_LAYER + suffix, "digest": digest, "size": size}

    def add_file(self, path: str, file: IO[bytes]) -> None:
        """Keep the layer blob read from ``file`` (from where it is to its end) under the
        archive path ``path``."""
        with self.blobs.writer(None) as (copy, hasher):
            magic = b""
            while chunk := file.read(1 << 20):
                magic = magic or chunk[:4]
                copy.write(chunk)
        self.added(path, f"sha256:{hasher.sha256.hexdigest()}", hasher.size, magic)

    def descriptors(self) -> list[dict[str, Any]]:
        return list(self._layers.values())

    def record(self, store_lock: contextlib.AbstractContextManager[None],
               images: list[tuple[str, bytes, bytes | None, list[str]]]) -> None:
        """For each (image id, config, the archive's manifest or None, its layers' archive
        paths): store the config and the manifest (made if None) and record it."""
        from pydock.core.images.oci import OCI_CONFIG, OCI_MANIFEST

        with store_lock:
            for image_id, config, manifest, paths in images:
                config_digest = self.add_bytes_once(config)
                if manifest is None:
                    manifest = json.dumps({
                        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                        "config": {"mediaType": OCI_CONFIG, "digest": config_digest,
                                   "size": len(config)},
                        "layers": [self._layers[p] for p in paths],
                    }, separators=(",", ":")).encode()
                self.blobs.add_manifest(image_id, self.add_bytes_once(manifest))

    def add_bytes_once(self, data: bytes) -> str:
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if not self.blobs.has(digest):
            self.blobs.add_bytes(data, digest)
        return digest

    def discard(self) -> None:
        named: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(self.blobs.manifests_dir):
                if not name.startswith("."):
                    named |= self.blobs.closure(self.blobs.manifests_of(f"sha256:{name}"))
        for descriptor in self._layers.values():
            if descriptor["digest"] not in named:
                self.blobs.path(descriptor["digest"]).unlink(missing_ok=True)
