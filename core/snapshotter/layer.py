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
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pydock.core.containers.commit import build_change_layer
from pydock.core.driver import StorageDriver
from pydock.core.layers.changes import walk_changes
from pydock.core.layers.treecopy import copy_tree
from pydock.core.runtime.rootfs import make_mounts_private, mount_rootfs
from pydock.core.syscalls import CLONE_NEWNS, MNT_DETACH, umount2, unshare


def build_layer(driver: StorageDriver, container: str, layers: Sequence[Path],
                layer: Path) -> None:
    """Write the changes of ``container`` (prepared on ``layers``) as the layer ``layer``,
    which must not exist."""
    changes_dir = driver.changes_dir(container)
    if changes_dir is not None:
        copy_tree(changes_dir, layer)
        return
    mountpoint = layer.with_name(layer.name + ".root")
    mountpoint.mkdir(mode=0o700)

    def compare() -> None:
        mount_rootfs(str(mountpoint), driver.mounts(container, layers))
        try:
            build_change_layer(mountpoint, walk_changes(mountpoint, layers), layer)
        finally:
            _unmount_all(str(mountpoint))

    try:
        in_own_mount_namespace(compare)
    finally:
        with contextlib.suppress(OSError):
            mountpoint.rmdir()


def in_own_mount_namespace(task: Callable[[], None]) -> None:
    """Run ``task`` in a new thread with a mount namespace of its own, where its mounts stay.

    Namespaces belong to threads: unshare(2) in a fresh thread changes that thread alone, and
    the namespace, with whatever is mounted in it, goes when the thread ends. A namespace
    kept for the service's whole life would instead keep a reference to every host mount
    that existed when it was made (on a host whose "/" is private, as here, nothing
    propagates into it), and hold a filesystem the host has unmounted, with its loop device,
    until the service ends. A forked child would do too, but forking a process whose gRPC
    threads may hold locks is what grpc warns against.
    """
    failure: list[BaseException] = []

    def run() -> None:
        try:
            unshare(CLONE_NEWNS)
            make_mounts_private()
            task()
        except BaseException as exc:  # handed to the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="snapshot-mounts")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


def _unmount_all(mountpoint: str) -> None:
    """Undo every mount stacked on ``mountpoint`` (a driver may return several)."""
    while True:
        try:
            umount2(mountpoint, MNT_DETACH)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # nothing (more) mounted there
                return
            raise
