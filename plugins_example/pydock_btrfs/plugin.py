"""The plugin: pydock loads this module through the ``pydock`` entry point declared in
pyproject.toml and calls its hook, which registers the driver. It is kept apart from the driver
so that the driver module is about storage only; a distribution with several drivers registers
them all here."""

from __future__ import annotations

from collections.abc import Callable

from pydock.core import hookimpl
from pydock.core.driver import StorageDriver

from pydock_btrfs.driver import BtrfsDriver


@hookimpl
def register_storage_drivers(register: Callable[[type[StorageDriver]], None]) -> None:
    register(BtrfsDriver)
