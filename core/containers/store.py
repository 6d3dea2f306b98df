"""Where a storage root keeps containers: their records, their images, their drivers.

:class:`ContainerStore` is what every container operation starts from, and all that
cleaning up after crashes (:mod:`pydock.core.containers.cleanup`) needs; the operations
themselves (:mod:`pydock.core.containers.lifecycle`) build on it.
"""

from __future__ import annotations

from pathlib import Path

from pydock.core.containers.state import StateStore
from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.images.store import ImageStore
from pydock.core.plugins import DriverRegistry, availability_of, driver_home


class ContainerStore:
    """The records, images and storage drivers of the storage root ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = StateStore(root)
        self.images = ImageStore(root)
        self._registry: DriverRegistry | None = None

    @property
    def registry(self) -> DriverRegistry:
        """The plugin manager's drivers, made on first use (only commands that need one)."""
        if self._registry is None:
            self._registry = DriverRegistry()
        return self._registry

    def driver(self, name: str) -> StorageDriver:
        """An instance of driver ``name``, refused with the driver's reason if it cannot work."""
        cls = self.registry.driver_class(name)
        home = driver_home(self.root, name)
        availability = availability_of(cls, home)
        if not availability.ok:
            raise PydockError(f"storage driver {name!r} is not available here: "
                              f"{availability.reason}")
        return cls(home)

    def stored_driver(self, name: str) -> StorageDriver:
        """Driver ``name``, to handle what it stored: unlike :meth:`driver`, also where it
        could no longer create anything."""
        return self.registry.driver_class(name)(driver_home(self.root, name))

    def resolve(self, reference: str) -> str:
        """The name of the container that ``reference`` names: its name, its id or a
        unique prefix of its id (:mod:`pydock.core.containers.references`)."""
        from pydock.core.containers.references import resolve

        return resolve(self.state, reference)
