"""An active snapshot's changes as a new layer directory, the way ``pydock commit`` finds them.

A driver that keeps its changes in a directory of the layer format (overlay's upper
directory: :meth:`StorageDriver.changes_dir`) has them copied as they are: whiteouts, opaque
directories, hardlinks, xattrs and all, reflinked where the filesystem can. For any other
driver, the container's root is mounted and compared with its layers by the core's naive
differ, and the layer is built from what differs, deletions as whiteouts.

Unlike ``pydock commit``, nothing is left out: the empty files pydock's own containers have
as mount points for /etc/hosts and the like are not made here, so an image that holds such
a file keeps it.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Sequence
from pathlib import Path

from pydock.core.containers.commit import build_change_layer
from pydock.core.driver import StorageDriver
from pydock.core.layers.changes import walk_changes
from pydock.core.layers.treecopy import copy_tree
from pydock.core.runtime.rootfs import mount_rootfs
from pydock.core.syscalls import MNT_DETACH, umount2


def build_layer(driver: StorageDriver, container: str, layers: Sequence[Path],
                layer: Path) -> None:
    """Write the changes of ``container`` (prepared on ``layers``) as the layer ``layer``,
    which must not exist. The caller's mount namespace must be its own."""
    changes_dir = driver.changes_dir(container)
    if changes_dir is not None:
        copy_tree(changes_dir, layer)
        return
    mountpoint = layer.with_name(layer.name + ".root")
    mountpoint.mkdir(mode=0o700)
    try:
        mount_rootfs(str(mountpoint), driver.mounts(container, layers))
        try:
            root = Path(mountpoint)
            build_change_layer(root, walk_changes(root, layers), layer)
        finally:
            _unmount_all(str(mountpoint))
    finally:
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def _unmount_all(mountpoint: str) -> None:
    """Undo every mount stacked on ``mountpoint`` (a driver may return several)."""
    while True:
        try:
            umount2(mountpoint, MNT_DETACH)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # nothing (more) mounted there
                return
            raise
