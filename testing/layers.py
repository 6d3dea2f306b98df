"""Layers and storage roots for tests: built in memory, imported the way images are."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from pydock.core.images.store import ImageStore
from pydock.testing.tar import Member, tar_bytes


def import_layers(store: ImageStore, layers: Sequence[Sequence[Member]]) -> list[str]:
    """One layer per member list (a PAX tar of them, in order), imported through
    ``ImageStore.import_layer``; their diff_ids."""
    return [store.import_layer(io.BytesIO(tar_bytes(members))) for members in layers]


def default_image_root(root: Path) -> Path:
    """A new storage root at ``root`` holding only pydock's default image (to copy per test:
    building the image once per session saves each test the work)."""
    from pydock.core.images.default import build_default_image

    build_default_image(ImageStore(root))
    return root
