"""The bind driver: every container of an image shares one writable directory.

This is the approach of the tutorials' chapter 2, kept as the baseline that
shows why overlay exists: creating a container costs nothing, but what one
container writes every other container of the image sees at once. With
``--read-only`` (which the core applies to any driver) the shared root is safe.

The shared directory is a flattened copy of the image's layers, made on the
first container of an image and deleted with the last one, so the image
itself stays pristine for the other drivers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from pydock.core import hookimpl
from pydock.core.driver import Mount, StorageDriver, Usage, chain_key, tree_usage
from pydock.core.files import flocked, remove_tree


class BindDriver(StorageDriver):
    name = "bind"

    def shared_dir(self, layers: Sequence[Path]) -> Path:
        """The one directory every container of this layer chain binds as its root."""
        return self.home / "shared" / chain_key(layers)

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        # Imported here: it brings tarfile and the copier, which `run` on other drivers
        # must not pay for (every built-in driver module is imported on the run path).
        from pydock.core.layers.flatten import flatten

        self.make_home()
        top = self.container_dir(container_id)
        top.mkdir(mode=0o700)
        self.rootfs_dir(container_id).mkdir(mode=0o700)
        shared = self.shared_dir(layers)
        with self._locked():
            # The link both records which shared directory this container uses and
            # counts it as a user, so remove() knows when the last one is gone.
            os.symlink(shared, top / "shared")
            if not shared.exists():
                # Built inside this container's own directory, which remove() deletes, so a
                # copy interrupted by a crash is never left behind; then renamed into place.
                tmp = top / "shared-build"
                tmp.mkdir(mode=0o700)
                flatten(layers, tmp / "rootfs")
                shared.parent.mkdir(mode=0o700, exist_ok=True)
                os.rename(tmp, shared)

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [Mount("bind", str(self.shared_dir(layers) / "rootfs"), ("rbind",))]

    def remove(self, container_id: str) -> None:
        if not self.home.exists():
            return
        top = self.container_dir(container_id)
        with self._locked():
            try:
                shared = Path(os.readlink(top / "shared"))
            except FileNotFoundError:
                shared = None
            super().remove(container_id)
            if shared is not None and not self._users(shared):
                with contextlib.suppress(FileNotFoundError):
                    remove_tree(shared)

    def usage(self, container_id: str) -> Usage:
        """The shared root's usage: every write lands there, whichever container made it.

        Containers of one image report the same figure; summing over them overcounts.
        """
        try:
            shared = Path(os.readlink(self.container_dir(container_id) / "shared"))
        except FileNotFoundError:
            return Usage(0, 0)
        return tree_usage(shared)

    def metadata(self, container_id: str, layers: Sequence[Path]) -> dict[str, str]:
        return {"SharedDir": str(self.shared_dir(layers) / "rootfs"),
                "MergedDir": str(self.rootfs_dir(container_id))}

    def _users(self, shared: Path) -> list[str]:
        users = []
        for entry in os.scandir(self.home):
            with contextlib.suppress(OSError):
                if Path(os.readlink(os.path.join(entry.path, "shared"))) == shared:
                    users.append(entry.name)
        return users

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        return flocked(self.home / "lock")


@hookimpl
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    register(BindDriver)
