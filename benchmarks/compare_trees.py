"""compare.py's root filesystems: the small image exported by pydock, the large one generated.

Both are kept unpacked (for runc and ``cp -a``) and as a tar (for pydock's and podman's
imports), with their entries and bytes for the report.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compare_commands import run

SMALL, LARGE = "small", "large"

# The large image: the small tree plus SMALL_FILE_COUNT files of 1-32 KiB and
# BIG_FILE_COUNT files of 4 MiB under DATA_DIR, about 266 MB in about 8,600 entries.
LARGE_SEED = 5
DATA_DIR = "usr/share/bench-data"
SMALL_FILE_COUNT = 8300
SMALL_FILE_KIB = (1, 32)
BIG_FILE_COUNT = 30
BIG_FILE_SIZE = 4 << 20


@dataclass(frozen=True)
class Tree:
    """A root filesystem, unpacked and as a tar, with its size."""

    name: str
    directory: Path
    tar: Path
    entries: int
    size: int


def export_small_tree(pydock_argv: Callable[..., list[str]], work: Path) -> Tree:
    """pydock's embedded default image, exported as a tar and unpacked.

    ``pydock_argv`` makes the command line of the pydock under test, with its storage root.
    """
    tar, directory = work / "small.tar", work / "small"
    run(pydock_argv("run", "--name", "bench-export", "/bin/true"))
    run(pydock_argv("export", "bench-export", "-o", str(tar)))
    run(pydock_argv("rm", "bench-export"))
    directory.mkdir()
    run(["tar", "-xpf", str(tar), "-C", str(directory)])
    return Tree(SMALL, directory, tar, *tree_size(directory))


def generate_large_tree(small: Tree, work: Path) -> Tree:
    """The small tree plus the generated files under DATA_DIR, unpacked and as a tar."""
    directory, tar = work / "large", work / "large.tar"
    run(["cp", "-a", str(small.directory), str(directory)])
    rng = random.Random(LARGE_SEED)
    data = directory / DATA_DIR
    for index in range(SMALL_FILE_COUNT):
        size = rng.randint(*SMALL_FILE_KIB) * 1024
        _write(data / f"{index // 100:02d}" / f"file-{index:04d}", rng.randbytes(size))
    for index in range(BIG_FILE_COUNT):
        _write(data / "big" / f"blob-{index:02d}", rng.randbytes(BIG_FILE_SIZE))
    run(["tar", "--numeric-owner", "-C", str(directory), "-cf", str(tar), "."])
    return Tree(LARGE, directory, tar, *tree_size(directory))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def tree_size(directory: Path) -> tuple[int, int]:
    """Entries (files, directories, links) and bytes of regular files under ``directory``."""
    entries = size = 0
    for parent, dirs, files in os.walk(directory):
        entries += len(dirs) + len(files)
        for name in files:
            size += os.lstat(os.path.join(parent, name)).st_size
    return entries, size
