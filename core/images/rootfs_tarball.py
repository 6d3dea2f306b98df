"""``pydock image import``: an image from a root filesystem tarball (one layer)."""

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
    return store.add_image(image_config([diff_id], int(time.time()), f"import {tarball.name}"),
                           name)
