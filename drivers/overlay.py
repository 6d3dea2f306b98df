"""The overlay driver (the default): the image's layers as read-only lower
directories, one private upper and work directory per container.

Creating a container costs three empty directories whatever the image's size;
the first write to a file of the image copies the whole file up into the upper
directory (overlay's copy-up), and everything the container changes is exactly
what sits in its upper directory.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pydock.core import hookimpl
from pydock.core.driver import Availability, Mount, StorageDriver
from pydock.core.errors import PydockError
from pydock.core.layers.format import MAX_LAYERS
from pydock.core.syscalls import OVERLAYFS_SUPER_MAGIC, statfs_type

# overlay's mount options are a comma-separated list and lowerdir a colon-separated one.
_UNSAFE_PATH_CHARACTERS = frozenset(",:\\")
# Set explicitly (containerd's overlay snapshotter does so for index), because the kernel's
# defaults for them vary (CONFIG_OVERLAY_FS_INDEX, _REDIRECT_DIR and _METACOPY, or the
# overlay module's parameters), and pydock's layer code (diff, commit, flatten) and the
# conformance suite assume all three off. With redirect_dir, renaming a lower directory
# writes a redirect xattr into the upper directory that no layer tar can carry; with
# metacopy, a chown or chmod copies up metadata only, leaving an upper file without its
# data that commit would store as an empty file; with index, hardlinks of a lower file
# survive copy-up, which the upper directory alone cannot express in a layer.
# redirect_dir=off creates no redirects (the kernel may still follow existing ones, per
# redirect_always_follow; pydock's layers hold none).
# userxattr does not apply: pydock mounts as root in the initial user namespace, where
# overlay keeps its own xattrs in trusted.overlay.*, the layer format's namespace;
# userxattr (user.overlay.*) is for mounts made inside a user namespace.
FIXED_OPTIONS = ("index=off", "redirect_dir=off", "metacopy=off")


class OverlayDriver(StorageDriver):
    name = "overlay"

    @classmethod
    def available(cls, home: Path) -> Availability:
        try:
            with open("/proc/filesystems") as f:
                if not any(line.split()[-1] == "overlay" for line in f if line.strip()):
                    return Availability(False, "the kernel has no overlay filesystem "
                                               "(try: modprobe overlay)")
        except OSError as exc:
            return Availability(False, f"cannot read /proc/filesystems: {exc.strerror}")
        if _UNSAFE_PATH_CHARACTERS & set(str(home)):
            return Availability(False, f"storage path {home} contains ',', ':' or '\\', "
                                       "which overlay mount options cannot carry")
        existing = _nearest_existing(home)
        if statfs_type(str(existing)) == OVERLAYFS_SUPER_MAGIC:
            return Availability(False, f"{existing} is on overlayfs, and overlay cannot use an "
                                       "upper directory on overlay: use a --root on another "
                                       "filesystem")
        return Availability(True)

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        # Chains longer than one page of mount options (the fixed options included) are
        # mounted by the core through fsconfig(2), one "lowerdir+" per layer and one call per
        # other option (Linux 6.8+), up to the kernel's own cap.
        if len(_lower_dirs(layers)) > MAX_LAYERS:
            raise PydockError(f"the image has {len(layers)} layers; overlay stacks at most "
                              f"{MAX_LAYERS} (the kernel's limit): flatten it, or use "
                              "--storage copy")
        self.make_home()
        top = self.container_dir(container_id)
        top.mkdir(mode=0o700)
        (top / "work").mkdir(mode=0o700)
        self.rootfs_dir(container_id).mkdir(mode=0o700)
        # The container's "/" takes its owner and mode from the upper directory, so
        # it must look like the image's root, not like a private 0700 directory.
        upper = top / "upper"
        upper.mkdir()
        image_root = os.stat(layers[-1])
        os.chown(upper, image_root.st_uid, image_root.st_gid)
        os.chmod(upper, image_root.st_mode & 0o7777)

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        top = self.container_dir(container_id)
        lowerdir = ":".join(str(layer) for layer in _lower_dirs(layers))
        return [Mount("overlay", "overlay",
                      (f"lowerdir={lowerdir}", f"upperdir={top / 'upper'}",
                       f"workdir={top / 'work'}", *FIXED_OPTIONS))]

    def changes_dir(self, container_id: str) -> Path:
        # The upper directory holds exactly what the container changed, in the layer format.
        return self.container_dir(container_id) / "upper"

    def metadata(self, container_id: str, layers: Sequence[Path]) -> dict[str, str]:
        top = self.container_dir(container_id)
        return {"LowerDir": ":".join(str(layer) for layer in _lower_dirs(layers)),
                "UpperDir": str(top / "upper"), "WorkDir": str(top / "work"),
                "MergedDir": str(self.rootfs_dir(container_id))}


def _lower_dirs(layers: Sequence[Path]) -> list[Path]:
    """overlay's lowerdir list: top first (the image chain is bottom first), each layer once.

    An image may hold the same layer twice (two identical empty steps of a build); overlay
    refuses a directory given twice (ELOOP). Keeping only the topmost copy shows the same
    tree: it re-applies everything the lower copy did, over everything between them.
    """
    return list(dict.fromkeys(reversed(layers)))


def _nearest_existing(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


@hookimpl
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    register(OverlayDriver)
