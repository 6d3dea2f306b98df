"""``pydock cp``: which root to copy in or out of, for a running or a stopped container.

A running container's root is the one its processes see, volumes and tmpfs mounts
included: ``/proc/PID/root``, opened while a pidfd proves PID is still the container's
first process. A stopped container's root exists only as its driver's mounts: they are
made in a short-lived child's private mount namespace
(:func:`pydock.core.runtime.mounted.in_container_root`), which does the copy and exits,
so the host keeps no mount (volumes are not there then). The copy itself, resolved inside
the root by descriptor, is :mod:`pydock.core.runtime.copying`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING

from pydock.core import processes
from pydock.core.errors import PydockError
from pydock.core.runtime import copying
from pydock.core.runtime.mounted import in_container_root

if TYPE_CHECKING:
    from pydock.core.containers.lifecycle import Containers


def copy(containers: Containers, name: str, inward: bool, container_path: str,
         host_path: str, archive: bool) -> None:
    """Copy ``host_path`` to ``container_path`` in container ``name`` if ``inward``, else
    the other way."""
    record = containers.state.load(name)

    def task(root_fd: int) -> None:
        if inward:
            copying.copy_in(root_fd, host_path, container_path, archive)
        else:
            copying.copy_out(root_fd, container_path, host_path, archive)

    with processes.opened(record.pid, record.pid_start) as pidfd:
        if pidfd is not None:
            root_fd = _root_of(record.pid, pidfd)
            if root_fd is not None:
                try:
                    task(root_fd)
                finally:
                    os.close(root_fd)
                return
    if not record.spec["root"]["path"]:
        raise PydockError(f"container {name} was made by an older pydock, whose records do "
                          "not say where its root is")
    driver = containers.stored_driver(record.driver)
    in_container_root(record.spec["root"]["path"],
                      driver.mounts(record.id, containers.images.layer_paths(record.layers)),
                      _with_root(task))


def _root_of(pid: int, pidfd: int) -> int | None:
    """The root directory of process ``pid``, which ``pidfd`` holds; None if it has died
    (then the pid may be another process's by now, and its root is not the container's)."""
    try:
        root_fd = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    if processes.wait_for_exit(pidfd, 0):
        os.close(root_fd)
        return None
    return root_fd


def _with_root(task: Callable[[int], None]) -> Callable[[str], None]:
    def run(rootfs: str) -> None:
        root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            task(root_fd)
        finally:
            os.close(root_fd)
    return run
