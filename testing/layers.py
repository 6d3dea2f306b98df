"""Layers and storage roots for tests: built in memory, imported the way images are."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pydock.core.images.store import ImageStore

LayerBuild = Callable[[tarfile.TarFile], None]
"""Writes a layer's members into an open tar (PAX format)."""


def import_built_layers(store: ImageStore, builds: Sequence[LayerBuild]) -> list[str]:
    """One layer per build, imported through ``ImageStore.import_layer``; their diff_ids."""
    diff_ids = []
    for build in builds:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            build(tar)
        buffer.seek(0)
        diff_ids.append(store.import_layer(buffer))
    return diff_ids


def default_image_root(root: Path) -> Path:
    """A new storage root at ``root`` holding only pydock's default image (to copy per test:
    building the image once per session saves each test the work)."""
    from pydock.core.images.default import build_default_image

    build_default_image(ImageStore(root))
    return root
