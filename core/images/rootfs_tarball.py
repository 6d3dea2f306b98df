"""``pydock image import``: an image from a root filesystem tarball (one layer).

A plain or gzip'd tarball is also kept as the layer's blob (:mod:`pydock.core.images.blobs`),
once its content is checked to be the tar just imported: pushed or saved, the image then keeps
its id. xz and bzip2 are no layer media types; such an image gets a regenerated layer when it
is pushed or saved.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

from pydock.core.images.store import Image, ImageStore, image_config, normalize_reference
from pydock.core.progress import ProgressReader


def import_rootfs_tarball(store: ImageStore, tarball: Path, reference: str) -> Image:
    """Import ``tarball`` (plain, gzip, xz or bzip2, detected by content) as ``reference``."""
    from pydock.core.layers.compression import open_tarball

    name = normalize_reference(reference)  # a bad name fails before any work is done
    progress = ProgressReader(open_tarball(tarball), f"importing {tarball.name}")
    with io.BufferedReader(progress) as stream:
        diff_id = store.import_layer(stream)
    image = store.add_image(image_config([diff_id], int(time.time()), f"import {tarball.name}"),
                            name)
    _keep_blob(store, tarball, image)
    return image


def _keep_blob(store: ImageStore, tarball: Path, image: Image) -> None:
    import gzip
    import hashlib
    import zlib

    from pydock.core.images.blobs import BlobStore, KeptBlobs
    from pydock.core.layers.compression import BZIP2_MAGIC, XZ_MAGIC, ZSTD_MAGIC

    kept = KeptBlobs(BlobStore(store.root))
    with open(tarball, "rb") as file:
        magic = file.read(6)
        if magic.startswith((XZ_MAGIC, BZIP2_MAGIC, ZSTD_MAGIC)):
            return
        file.seek(0)
        kept.add_file("layer", file)
    [blob] = kept.descriptors()
    # The file may have changed since it was imported: keep it only if it still is that tar.
    sha256 = hashlib.sha256()
    try:
        with open(kept.blobs.path(blob["digest"]), "rb") as raw:
            stream = gzip.GzipFile(fileobj=raw) if blob["mediaType"].endswith("+gzip") else raw
            while chunk := stream.read(1 << 20):
                sha256.update(chunk)
    except (OSError, EOFError, zlib.error):
        sha256 = hashlib.sha256(b"not the tar imported")
    if f"sha256:{sha256.hexdigest()}" != image.diff_ids[0]:
        kept.discard()
        return
    config = (store.configs_dir / f"{image.id.removeprefix('sha256:')}.json").read_bytes()
    kept.record(store.locked(), [(image.id, config, None, ["layer"])])
