"""The large image ``pydock bench`` measures next to the small default image.

A driver's cost can only be judged against image size: overlay's should not move, a full
copy's should grow with it. So bench builds a second, large image: the default image's layer
(so ``/bin/true`` runs) plus one data layer shaped like the bulk of a real image, many small
files and a few large ones:

* a quarter of the bytes in small files of 512 B to 32 KiB (log-uniform, about 7.8 KB on
  average), 100 to a directory under ``/bench/small/``;
* the rest in six equally large files, ``/bench/large/0.bin`` to ``5.bin`` (0 takes the odd
  bytes); bench's writes go to ``0.bin``, whatever the size.

At the default 256 MB that is 8,372 files, six of them 32 MB: the shape of a real 258 MB,
8.3k-file image tree (``cp -a`` of it: about 0.87 s on ext4 with a warm cache, 2 cores).
Contents are pseudo-random (SHAKE-128 of a fixed seed and the path): incompressible, so no
filesystem can make copies cheap by compressing or deduplicating them, and the same on every
run, so the layer tar, its digest and the image id are the same each time. The layer is written
as a tar and imported through :meth:`ImageStore.import_layer`, as any image is, once per
storage root and size: the image is named ``pydock/bench-large:<size>mb`` and later runs reuse it.
"""

from __future__ import annotations

import hashlib
import io
import math
import random
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pydock.core.errors import PydockError
from pydock.core.files import scratch_file
from pydock.core.images.store import Image, ImageStore, rfc3339
from pydock.core.progress import ProgressReader, StatusLine

LARGE_IMAGE = "pydock/bench-large"
# The floor keeps the large image several times the default image (about 1 MB) and its large
# files big enough for a copy-up to show; tests use it, users need not go lower.
MIN_SIZE_MB = 8
SEED = b"pydock bench image v1"
LARGE_FILES = 6
WRITE_TARGET = "/bench/large/0.bin"
SMALL_SHARE = 4  # one byte in SMALL_SHARE is in small files
SMALL_MIN, SMALL_MAX = 512, 32 * 1024
FILES_PER_DIR = 100
# Fixed times for every entry and the image config: a timestamp in the tar would change
# its digest, and so the image id, from one build to the next.
MTIME = 1_700_000_000


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int


def plan(size_mb: int) -> list[PlannedFile]:
    """The files of the data layer for ``size_mb`` MB (10**6 bytes), in the order written."""
    if size_mb < MIN_SIZE_MB:
        raise PydockError(f"--large-size must be at least {MIN_SIZE_MB} (MB), got {size_mb}")
    total = size_mb * 1_000_000
    small_budget = total // SMALL_SHARE
    rng = random.Random(SEED)
    low, high = math.log(SMALL_MIN), math.log(SMALL_MAX)
    files: list[PlannedFile] = []
    used = 0
    while used < small_budget:
        size = min(int(math.exp(rng.uniform(low, high))), small_budget - used)
        index = len(files)
        files.append(PlannedFile(f"bench/small/{index // FILES_PER_DIR:04d}/"
                                 f"{index % FILES_PER_DIR:02d}.dat", size))
        used += size
    large, odd = divmod(total - used, LARGE_FILES)
    files.extend(PlannedFile(f"bench/large/{n}.bin", large + (odd if n == 0 else 0))
                 for n in range(LARGE_FILES))
    return files


def large_image(store: ImageStore, base: Image, size_mb: int, status: StatusLine) -> Image:
    """The large image of ``size_mb`` MB on top of ``base``, built now if this root lacks it."""
    files = plan(size_mb)  # a size below the floor fails before anything is looked up
    reference = large_reference(size_mb)
    try:
        return store.resolve(reference)
    except PydockError:
        pass
    with scratch_file(store.root) as tar_file:
        write_data_layer(tar_file, files, lambda done: status.show(
            f"building {reference}: {done / 1e6:.0f}/{size_mb} MB"))
        status.clear()
        tar_file.seek(0)
        with io.BufferedReader(ProgressReader(tar_file, f"importing {reference}")) as stream:
            diff_id = store.import_layer(stream)
    config = dict(base.config)
    config["rootfs"] = {"type": "layers", "diff_ids": [*base.diff_ids, diff_id]}
    config["history"] = [*base.config.get("history", []), {
        "created": rfc3339(MTIME),
        "created_by": f"pydock bench: {len(files)} files, {size_mb} MB, seed {SEED.decode()}"}]
    return store.add_image(config, reference)


def large_reference(size_mb: int) -> str:
    return f"{LARGE_IMAGE}:{size_mb}mb"


def write_data_layer(out: BinaryIO, files: list[PlannedFile],
                     progress: Callable[[int], None]) -> None:
    """Write ``files`` as a layer tar to ``out``, reporting the bytes written so far."""
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        made: set[str] = set()
        done = 0
        for planned in files:
            _add_parents(tar, planned.path, made)
            data = hashlib.shake_128(SEED + planned.path.encode()).digest(planned.size)
            tar.addfile(_entry(planned.path, tarfile.REGTYPE, 0o644, len(data)), io.BytesIO(data))
            done += planned.size
            progress(done)


def _add_parents(tar: tarfile.TarFile, path: str, made: set[str]) -> None:
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/".join(parts[:depth])
        if directory not in made:
            made.add(directory)
            tar.addfile(_entry(directory, tarfile.DIRTYPE, 0o755))


def _entry(name: str, type_: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.size, info.mtime = type_, mode, size, MTIME
    return info

