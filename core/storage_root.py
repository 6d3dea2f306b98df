"""The storage root is root's alone: 0700, and so is every directory pydock makes in it.

Below ``--root`` lie the layers of every image, the upper directories and copies of every
container, their logs and records: whatever the images and containers put there, setuid-root
binaries and secrets included. An unprivileged host user who could reach a layer could run
such a binary as root on the host; one who could read a container's files could read its
secrets. So no one but root may enter the root, nor any directory pydock keeps in it.

Nothing else needs to pass through it, whatever user a container runs as: the core mounts a
container's root filesystem while it is still root with every capability (overlay goes on
using the credentials of whoever mounted it to reach the layers), and after pivot_root no
path under the storage root is ever resolved again. Docker's root is 0711 only because its
overlay mounts live on the host, where a user-namespaced container's root must be able to
pass through to them; pydock mounts inside the container and has no user namespaces.

A root made by an older pydock (0711 or 0755, with ``images`` and ``storage`` 0755) is
made private by the next command that writes to it. An existing directory given as
``--root`` that holds anything but pydock's own keeps its mode: it is not pydock's to
change, and the directories pydock keeps in it are private regardless.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE = 0o700
# The directories pydock keeps at the top of a storage root; ``cache`` holds what pydock can
# always make again (compiled seccomp filters); ``blobs`` what registries and archives sent,
# as it came (pydock.core.images.blobs), made with the root so that a refused pull or load
# leaves the root exactly as it found it.
TOP_LEVEL = ("blobs", "blobs/sha256", "cache", "containers", "images", "layers", "storage")
SECCOMP_CACHE = "cache/seccomp"
# Made on first use of the bridge network (pydock.core.containers.network), not before.
NETWORK = "network"
# Made by `pydock snapshotter serve` (pydock.core.snapshotter), which keeps all it serves
# there: its layers, its driver's containers and the snapshot graph.
SNAPSHOTTER = "snapshotter"


def ensure(root: Path) -> None:
    """Create the storage root and its top-level directories, each 0700, or make those of an
    existing root private. Cheap enough for every command that writes: a few stat calls."""
    try:
        os.mkdir(root, PRIVATE)
    except FileNotFoundError:
        # Missing parents are the user's, not pydock's: made like `mkdir -p` would.
        root.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(root, PRIVATE)
    except FileExistsError:
        if _open_to_others(root) and _holds_only_pydocks(root):
            os.chmod(root, PRIVATE)
    for name in TOP_LEVEL:
        directory = root / name
        try:
            os.mkdir(directory, PRIVATE)
        except FileExistsError:
            if _open_to_others(directory):
                os.chmod(directory, PRIVATE)


def _open_to_others(path: Path) -> bool:
    return bool(stat.S_IMODE(os.stat(path).st_mode) & 0o077)


def _holds_only_pydocks(root: Path) -> bool:
    # Hidden names are pydock's scratch work (a commit's, an unnamed file's: see leftovers.py).
    return all(name in (*TOP_LEVEL, NETWORK, SNAPSHOTTER) for name in os.listdir(root)
               if not name.startswith("."))
