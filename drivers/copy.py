"""The copy driver: a full private copy of the image per container.

The naive approach, kept to be measured against the others: creating a
container costs a copy of the whole image (cheap only where the filesystem
can reflink), but afterwards the container writes at native speed with no
copy-up, and its root is an ordinary directory tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from pydock.core import hookimpl
from pydock.core.driver import Mount, StorageDriver


class CopyDriver(StorageDriver):
    name = "copy"

    def copy_dir(self, container_id: str) -> Path:
        return self.container_dir(container_id) / "rootfs"

    def prepare(self, container_id: str, layers: Sequence[Path]) -> None:
        # Imported here: it brings tarfile and the copier, which `run` on other drivers
        # must not pay for (every built-in driver module is imported on the run path).
        from pydock.core.layers.flatten import flatten

        self.make_home()
        top = self.container_dir(container_id)
        top.mkdir(mode=0o700)
        self.rootfs_dir(container_id).mkdir(mode=0o700)
        flatten(layers, self.copy_dir(container_id))

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [Mount("bind", str(self.copy_dir(container_id)), ("rbind",))]

    def metadata(self, container_id: str, layers: Sequence[Path]) -> dict[str, str]:
        return {"RootDir": str(self.copy_dir(container_id)),
                "MergedDir": str(self.rootfs_dir(container_id))}


@hookimpl
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    register(CopyDriver)
