"""Waiting for containers, and starting them again: ``wait``, ``start`` and ``restart``."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from pydock.core import processes
from pydock.core.errors import PydockError

if TYPE_CHECKING:
    from pydock.core.containers.lifecycle import Containers

# How long one poll of a monitor's pidfd lasts; the wait itself has no limit, as docker's.
_WAIT_SLICE = 3600.0


def wait(containers: Containers, name: str) -> int:
    """Block until container ``name`` is no longer running; its exit code.

    The monitor records the exit code and then ends: its end, not the container's, is
    what is waited for, so the code read afterwards is the final one.
    """
    record = containers.state.load(name)
    with processes.opened(record.monitor_pid, record.monitor_start) as monitor:
        if monitor is not None:
            while not processes.wait_for_exit(monitor, _WAIT_SLICE):
                pass
    record = containers.state.load(name)
    if record.exit_code is None:
        raise PydockError(f"container {name} has not run: nothing to wait for")
    return record.exit_code


def start(containers: Containers, name: str, attach: bool, interactive: bool) -> tuple[
        int, str]:
    """Run container ``name`` again, as it was created: the same root (with what it
    changed), the same spec; its output is appended to its log. (exit code, error): with
    ``attach``, once it has ended; else once it runs. A running container is left alone."""
    from pydock.core.containers.lifecycle import Attach
    from pydock.core.containers.liveness import monitor_alive, process_alive

    lock = containers.state.lock(name)
    try:
        record = containers.state.load(name)
        if process_alive(record) or monitor_alive(record):
            os.close(lock)
            return 0, ""
        if not record.spec["root"]["path"]:
            raise PydockError(f"container {name} was made by an older pydock, whose records "
                              "do not say where its root is: it cannot be started again")
        driver = containers.stored_driver(record.driver)
    except BaseException:
        os.close(lock)
        raise
    # Started by hand: its restart policy applies again, counted afresh (as docker).
    record.restart_count = 0
    with contextlib.suppress(FileNotFoundError):
        containers.state.stop_mark(name).unlink()
    how = Attach(detach=not (attach or interactive), interactive=interactive,
                 tty=record.spec["process"]["terminal"])
    _, code, error = containers.launch(record, driver, lock, how, fresh=False)
    return code, error


def restart(containers: Containers, name: str, grace: float) -> None:
    """Stop container ``name`` (SIGTERM, then SIGKILL after ``grace`` seconds) if it
    runs, then start it again in the background."""
    containers.stop(name, grace)
    _, error = start(containers, name, attach=False, interactive=False)
    if error:
        raise PydockError(error)
