"""Where ``pydock bench`` keeps the containers it measures, and how it always removes them.

Bench calls the drivers directly (so that it can time ``prepare`` and ``remove`` alone), with
each driver's home under ``<root>/bench/.storage-<owner>/<driver>`` instead of the one
``pydock run`` uses (a scratch name of :mod:`pydock.core.leftovers`, owned by the bench).
Nothing bench does can then reach a user's containers: a bind container of the user's
shares nothing with bench's (bench writes into its containers' roots, and bind's root is
shared by every container of an image), and a "first container of an image" is really the
first. Those containers have no record, so ``pydock ps`` never lists them.

:class:`BenchStorage` is a context manager that removes, on the way out, whatever way that
is (an error, Ctrl-C, SIGTERM, SIGHUP), every container it prepared and every container
``pydock run`` made under one of its names, then the driver homes. Only SIGKILL can stop
that; what such a run leaves is removed by the next bench on the same root, before it
measures anything, through the drivers; or by ``prune`` once the bench is gone. One bench
at a time per root: the lock in ``<root>/bench/lock`` says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from pydock.core.containers.lifecycle import Containers
from pydock.core.containers.state import new_container_id
from pydock.core.driver import StorageDriver
from pydock.core.errors import PydockError
from pydock.core.files import hidden_name, remove_tree
from pydock.core.ids import is_container_id
from pydock.core.leftovers import sweep

# The signals that end a bench early: Ctrl-C, kill, and the terminal going away.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


BENCH_DIR = "bench"
# The storage of one bench, named after it; "storage" is the one name of every bench from
# before owners were recorded, which counts as abandoned.
STORAGE_PREFIXES = (".storage-", "storage")


def bench_storage(root: Path) -> Path:
    """A fresh directory for the driver homes of a bench of this process."""
    return root / BENCH_DIR / hidden_name(STORAGE_PREFIXES[0])


def bench_home(root: Path, driver_name: str) -> Path:
    """Where a bench of this process keeps containers of driver ``driver_name`` under storage
    root ``root``: a fresh name on every call, alike in every way a driver may check."""
    return bench_storage(root) / driver_name


class BenchStorage:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.top = containers.root / BENCH_DIR
        self.storage = bench_storage(containers.root)
        # Containers prepared and not yet removed, with the driver that prepared each.
        self._live: dict[str, StorageDriver] = {}
        self._run_prefix = f"bench-{secrets.token_hex(4)}-"
        self._runs = 0
        self._lock = -1

    def __enter__(self) -> BenchStorage:
        self.top.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock = os.open(self.top / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            raise PydockError(f"another pydock bench is running on {self.containers.root}: "
                              "wait for it to finish") from None
        try:
            self._remove_leftovers()
        except BaseException:
            os.close(self._lock)
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        try:
            with _signals_ignored():
                failures = self._clean_up()
        finally:
            os.close(self._lock)
        # An error already on its way out says more than a failed clean-up after it.
        if failures and error is None:
            raise PydockError(f"bench could not remove all it created: {failures[0]}")

    def home(self, driver_name: str) -> Path:
        return self.storage / driver_name

    def prepare(self, driver: StorageDriver, layers: Sequence[Path]) -> tuple[str, int]:
        """Prepare a new container's storage: (its id, nanoseconds ``driver.prepare`` took)."""
        container_id = new_container_id()
        # Recorded first: a prepare that fails or is interrupted half-way is removed too.
        self._live[container_id] = driver
        start = time.perf_counter_ns()
        try:
            driver.prepare(container_id, layers)
        except Exception as exc:
            raise PydockError(f"{driver.name}: preparing a container failed: {exc}") from exc
        return container_id, time.perf_counter_ns() - start

    def remove(self, container_id: str) -> int:
        """Remove a container's storage; the nanoseconds ``driver.remove`` took."""
        driver = self._live[container_id]
        start = time.perf_counter_ns()
        try:
            driver.remove(container_id)
        except Exception as exc:
            raise PydockError(f"{driver.name}: removing a container failed: {exc}") from exc
        elapsed = time.perf_counter_ns() - start
        del self._live[container_id]
        return elapsed

    def run_name(self) -> str:
        """A fresh name for a container made through ``pydock run``, removed on the way out
        should that run not get to remove it itself."""
        self._runs += 1
        return f"{self._run_prefix}{self._runs}"

    def _clean_up(self) -> list[str]:
        failures = []
        # Every child of this process is one of bench's; a forked measurement may still hold
        # a container's mounts in its namespace, so it must be gone before the storage.
        _wait_for_children()
        for container_id, driver in list(self._live.items()):
            try:
                driver.remove(container_id)
                del self._live[container_id]
            except Exception as exc:
                failures.append(f"{driver.name} container {container_id}: {exc}")
        for name in self.containers.state.names():
            if name.startswith(self._run_prefix):
                try:
                    self.containers.remove(name, force=True)
                except (PydockError, OSError) as exc:
                    failures.append(f"container {name}: {exc}")
        if not failures:
            try:
                remove_tree(self.storage)
            except FileNotFoundError:
                pass
            except OSError as exc:
                failures.append(str(exc))
        return failures

    def _remove_leftovers(self) -> None:
        """Remove what a bench killed by SIGKILL left: each container through its driver
        (a btrfs snapshot cannot be deleted as plain files), then the homes."""
        problems = sweep(self.top, STORAGE_PREFIXES, self._remove_storage)
        if problems:
            raise PydockError(f"cannot remove what an interrupted bench left: {problems[0]}")

    def _remove_storage(self, storage: Path) -> None:
        for home in sorted(storage.iterdir()):
            driver = self.containers.registry.driver_class(home.name)(home)
            for entry in sorted(os.listdir(home)):
                if is_container_id(entry):
                    driver.remove(entry)
        remove_tree(storage)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Any of these while cleaning up would leave half of it undone."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait_for_children() -> None:
    with contextlib.suppress(ChildProcessError):
        while True:
            os.waitpid(-1, 0)
