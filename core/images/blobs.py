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

Blobs go with the last image that names them (:meth:`BlobStore.forget_image`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pydock.core.errors import PydockError
from pydock.core.files import hidden_name, write_json_atomic
from pydock.core.ids import is_digest
from pydock.core.leftovers import sweep


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
            os.rename(scratch, self.path(actual))
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
        doomed = self._closure(self.manifests_of(image_id))
        for other in keep:
            doomed -= self._closure(self.manifests_of(other))
        (self.manifests_dir / image_id.removeprefix("sha256:")).unlink(missing_ok=True)
        for digest in doomed:
            self.path(digest).unlink(missing_ok=True)

    def sweep(self) -> list[str]:
        return [*sweep(self.dir, (".tmp-", ".rm-")), *sweep(self.manifests_dir, (".new-",))]

    def _closure(self, manifests: list[str]) -> set[str]:
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
