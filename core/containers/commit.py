"""``diff``, ``commit`` and ``export``: a container's changes, as a list, a layer or a tarball.

Each works for any driver. A driver that keeps its changes in a directory of the layer
format (overlay's upper directory; ``StorageDriver.changes_dir``) is read directly, at a
cost proportional to the change. For any other driver the container's root is mounted in a
short-lived child (:func:`pydock.core.runtime.mounted.in_container_root`) and compared with the
image, and a commit builds its layer there from the changes found: added and changed
entries copied, deleted ones as whiteouts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pydock.core import failpoints
from pydock.core.errors import PydockError
from pydock.core.files import DirCursor, hidden_name, remove_tree, scratch_file
from pydock.core.images.store import Image, ImageStore, normalize_reference, rfc3339
from pydock.core.layers.changes import (
    Change,
    mount_points_made,
    upper_changes,
    walk_changes,
    without_mount_points,
)
from pydock.core.layers.format import OVERLAY_XATTR_PREFIX, make_whiteout
from pydock.core.runtime.mounted import in_container_root

if TYPE_CHECKING:
    from pydock.core.containers.lifecycle import Containers
    from pydock.core.containers.state import ContainerRecord
    from pydock.core.driver import StorageDriver
    from pydock.core.layers.treecopy import EntryCopier

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def container_changes(containers: Containers, name: str) -> list[Change]:
    record, driver, layers = _open(containers, name)
    return changes(driver, record.id, layers)


def changes(driver: StorageDriver, container_id: str, layers: Sequence[Path]) -> list[Change]:
    """What a container changed against its layers, from its driver's changes directory or,
    without one, by comparing its mounted root with the image."""
    changes_dir = driver.changes_dir(container_id)
    if changes_dir is not None:
        return own_changes(changes_dir, layers, upper_changes(changes_dir, layers))
    found = in_container_root(str(driver.rootfs_dir(container_id)),
                              driver.mounts(container_id, layers),
                              lambda root: [(c.path, c.kind) for c in own_changes(
                                  Path(root), layers, walk_changes(Path(root), layers))])
    return [Change(path, kind) for path, kind in found]


def own_changes(tree: Path, layers: Sequence[Path], found: list[Change]) -> list[Change]:
    """``found`` in the container tree ``tree``, less the mount points pydock made there
    for the container's /etc files (:func:`pydock.core.layers.changes.mount_points_made`)."""
    return without_mount_points(found, mount_points_made(tree, layers), tree, layers)


def commit_layer(driver: StorageDriver, container_id: str, layers: Sequence[Path],
                 store: ImageStore) -> str:
    """Store a container's changes as one new layer; its diff_id."""
    from pydock.core.layers.pack import write_layer_tar

    # Named after this process: prune sweeps it once a crash has left it (leftovers.py).
    work = store.root / hidden_name(".commit-")
    work.mkdir(mode=0o700)
    try:
        changes_dir = driver.changes_dir(container_id)
        skip: set[str] = set()
        if changes_dir is None:
            changes_dir = work / "layer"
            in_container_root(str(driver.rootfs_dir(container_id)),
                              driver.mounts(container_id, layers),
                              lambda root: build_change_layer(Path(root), own_changes(
                                  Path(root), layers, walk_changes(Path(root), layers)),
                                  changes_dir))
        else:
            found = upper_changes(changes_dir, layers)
            skip = {c.path for c in found} - {
                c.path for c in own_changes(changes_dir, layers, found)}
        with scratch_file(work) as tar:
            write_layer_tar(tar, changes_dir, skip)
            failpoints.reached("commit.layer-written")
            tar.seek(0)
            return store.import_layer(tar)
    finally:
        with contextlib.suppress(OSError):
            remove_tree(work)


def commit(containers: Containers, name: str, reference: str) -> Image:
    """A new image: the container's image plus one layer holding exactly its changes."""
    target = normalize_reference(reference)  # a bad name fails before any work is done
    record, driver, layers = _open(containers, name)
    image = containers.images.resolve(record.image_id)
    diff_id = commit_layer(driver, record.id, layers, containers.images)
    config = dict(image.config)
    config["rootfs"] = {"type": "layers", "diff_ids": [*image.diff_ids, diff_id]}
    created = rfc3339(int(time.time()))
    config["created"] = created
    config["history"] = [*config.get("history", []),
                         {"created": created, "created_by": f"pydock commit {name}"}]
    return containers.images.add_image(config, target)


def export(containers: Containers, name: str, output: Path) -> None:
    """The container's whole root, flattened, as a tar written to ``output``."""
    from pydock.core.layers.pack import write_layer_tar

    record, driver, layers = _open(containers, name)
    partial = output.with_name(f".{output.name}.{secrets.token_hex(4)}.partial")

    def write(root: str) -> None:
        with open(partial, "xb") as out:
            write_layer_tar(out, Path(root), mount_points_made(Path(root), layers))
            out.flush()
            os.fsync(out.fileno())

    try:
        in_container_root(str(driver.rootfs_dir(record.id)), driver.mounts(record.id, layers),
                          write)
        os.rename(partial, output)
    except OSError as exc:
        raise PydockError(f"cannot write {output}: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


def build_change_layer(root: Path, changes: Sequence[Change], layer: Path) -> None:
    """Write ``changes`` of the tree ``root`` as an overlay-format layer directory ``layer``:
    added and changed entries copied with all their attributes, deleted ones as whiteouts.
    Directories come before what they hold (``changes`` sorted by path) and get their final
    attributes last."""
    from pydock.core.layers.treecopy import EntryCopier

    copier = EntryCopier()
    layer.mkdir(mode=0o755)
    layer_fd = os.open(layer, _DIR_FLAGS)
    root_fd = os.open(root, _DIR_FLAGS)
    # Changes come sorted by path: each directory is opened from the one before, never by
    # a whole path, which in a deep tree is more than PATH_MAX allows.
    layer_dirs, root_dirs = DirCursor(layer_fd), DirCursor(root_fd)
    try:
        _build(copier, root_dirs, layer_dirs, changes)
    finally:
        layer_dirs.close()
        root_dirs.close()
        os.close(layer_fd)
        os.close(root_fd)


def _build(copier: EntryCopier, root_dirs: DirCursor, layer_dirs: DirCursor,
           changes: Sequence[Change]) -> None:
    directories: list[tuple[str, os.stat_result, list[tuple[str, bytes]]]] = []
    linked: dict[tuple[int, int], str] = {}
    for change in sorted(changes):
        parent, _, entry = change.path.strip("/").rpartition("/")
        dst = layer_dirs.open(_names(parent))
        try:
            if change.kind == "D":
                make_whiteout(entry, dst)
                continue
            src = root_dirs.open(_names(parent))
            try:
                st = os.stat(entry, dir_fd=src, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    os.mkdir(entry, 0o700, dir_fd=dst)
                    fd = os.open(entry, _DIR_FLAGS, dir_fd=src)
                    try:
                        attrs = [(a, os.getxattr(fd, a)) for a in os.listxattr(fd)
                                 if not a.startswith(OVERLAY_XATTR_PREFIX)]
                    finally:
                        os.close(fd)
                    directories.append((change.path.strip("/"), st, attrs))
                elif (st.st_dev, st.st_ino) in linked:
                    # A second name of an inode this layer already holds: keep the hardlink.
                    first_parent, _, first = linked[st.st_dev, st.st_ino].rpartition("/")
                    first_fd = layer_dirs.open(_names(first_parent))
                    try:
                        os.link(first, entry, src_dir_fd=first_fd, dst_dir_fd=dst,
                                follow_symlinks=False)
                    finally:
                        os.close(first_fd)
                else:
                    copier.copy(src, dst, entry, st)
                    if st.st_nlink > 1:
                        linked[st.st_dev, st.st_ino] = change.path.strip("/")
            finally:
                os.close(src)
        finally:
            os.close(dst)
    for path, st, attrs in sorted(directories, key=lambda d: d[0].count("/"), reverse=True):
        fd = layer_dirs.open(_names(path))
        try:
            os.chown(fd, st.st_uid, st.st_gid)
            for attr, value in attrs:
                os.setxattr(fd, attr, value)
            os.chmod(fd, stat.S_IMODE(st.st_mode))
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(fd)


def _names(relative: str) -> list[str]:
    return [part for part in relative.split("/") if part]


def _open(containers: Containers,
          name: str) -> tuple[ContainerRecord, StorageDriver, list[Path]]:
    record = containers.state.load(name)
    driver = containers.driver(record.driver)
    return record, driver, containers.images.layer_paths(record.layers)
