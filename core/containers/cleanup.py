"""Cleaning up after crashes: what ``rm -f`` and ``prune`` do beyond removing a record.

A crash (``kill -9``, the OOM killer, a power cut) can leave, besides records that tell
the truth about it (see :func:`pydock.core.containers.liveness.live_status`):

- scratch entries under hidden names (:mod:`pydock.core.leftovers` lists them all): a
  record or a layer being created or deleted, a commit's work, a file being replaced;
  :func:`sweep` removes those whose owner is gone;
- a driver's storage for a container id that no record names any more:
  :func:`remove_orphaned_storage`;
- a record damaged outside pydock, which is never trusted: ``rm -f`` removes what it can
  still find of its container (:func:`remove_remains`).

- a lease, a veth, published ports of a container whose record is gone, and the bridge
  and its table once no container holds a lease: :func:`sweep_network`.

Cgroups are not swept this way: one whose record is gone may still hold a live process
(its monitor killed, the container running), which only ``rm -f`` may kill.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydock.core.containers.liveness import kill_process
from pydock.core.containers.state import CorruptRecord
from pydock.core.errors import PydockError
from pydock.core.ids import is_container_id
from pydock.core.leftovers import sweep as sweep_scratch

if TYPE_CHECKING:
    from pydock.core.containers.store import ContainerStore


# The scratch names at the top of the storage root: a commit's work directory, and an
# unnamed file's name where the filesystem cannot do without one (files.scratch_file).
ROOT_SCRATCH = (".commit-", ".tmp-")
# A bench's storage (pydock.core.bench.storage, a floor above this one) and what a sweep of
# it claimed.
BENCH_DIR, BENCH_SCRATCH = "bench", (".storage-", ".rm-")


def sweep(containers: ContainerStore) -> None:
    """Everything ``prune`` removes besides stopped containers. A leftover that cannot be
    removed is only warned about: it must not keep prune from the rest, and stays for the
    next prune to try again."""
    problems = containers.state.sweep()
    remove_orphaned_storage(containers)
    sweep_network(containers)
    problems += containers.images.sweep()
    problems += sweep_scratch(containers.root, ROOT_SCRATCH)
    problems += sweep_scratch(containers.root / BENCH_DIR, BENCH_SCRATCH)
    for problem in problems:
        sys.stderr.write(f"pydock: warning: {problem}\n")


def sweep_network(containers: ContainerStore) -> None:
    """The bridge network's leftovers (:func:`pydock.core.containers.network.sweep`): the
    leases are listed before the records are read, and a lease is taken after its record
    exists and given back before the record goes, so a lease seen first whose record is
    not found is a crash's."""
    from pydock.core.containers import network

    if not (containers.root / network.NETWORK_DIR).exists():
        return
    listed = network.read_leases(containers.root)
    known = set()
    for name in containers.state.names():
        try:
            known.add(containers.state.load(name).id)
        except CorruptRecord:
            known.add(containers.state.salvage(name).id)
        except PydockError:
            continue
    network.sweep(containers.root, [lease for lease in listed
                                     if lease.container_id not in known])


def remove_remains(containers: ContainerStore, name: str) -> None:
    """``rm -f`` of a corrupt record, under its lock: kill its process if the record still
    names it, remove the cgroup and the storage of the container id it names, then the
    record. Without an id, the storage cannot be told from another container's, but once
    the record is gone no record names it: :func:`remove_orphaned_storage` then removes it.
    """
    from pydock.core.runtime import cgroups

    remains = containers.state.salvage(name)
    if remains.pid and remains.pid_start:
        kill_process(name, remains.pid, remains.pid_start)
    if remains.id:
        # Its limits are unknown: cgroups.remove looks in every hierarchy.
        cgroups.remove(containers.root, remains.id)
        from pydock.core.containers import network

        network.release(containers.root, remains.id)
        home = containers.root / "storage"
        for driver in _listdir(home):
            if (home / driver / remains.id).exists():
                containers.stored_driver(driver).remove(remains.id)
    containers.state.delete(name)
    if not remains.id:
        remove_orphaned_storage(containers)


def remove_orphaned_storage(containers: ContainerStore) -> None:
    """Remove the storage of every container id that no record names (a record deleted
    in a crash, a corrupt one removed without its id); none while a record that cannot be
    read might name any of them.

    The storage is listed before the records are read: a container's record exists before
    its storage does, and goes after it, so storage seen first belongs to a record read
    later, or to none. A ``run`` at work meanwhile cannot lose its storage to this.
    """
    home = containers.root / "storage"
    stored = {(driver, entry) for driver in _listdir(home)
              for entry in _listdir(home / driver) if is_container_id(entry)}
    if not stored:
        return
    known = set()
    for name in containers.state.names():
        try:
            known.add(containers.state.load(name).id)
        except CorruptRecord:
            remains = containers.state.salvage(name)
            if not remains.id:
                return
            known.add(remains.id)
        except PydockError:  # removed meanwhile
            continue
    for driver, container_id in sorted(stored):
        if container_id not in known:
            try:
                storage_driver = containers.stored_driver(driver)
            except PydockError:  # a driver no longer installed: its files stay
                continue
            storage_driver.remove(container_id)


def _listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except (FileNotFoundError, NotADirectoryError):
        return []
