"""Hidden work directories: named after the process that owns them, swept once it is gone.

What pydock makes or deletes in several steps, it does in a hidden directory beside the
final place, so that a crash midway never leaves anything half-done under a real name: a
container record is written in ``.new-*`` and renamed into place, a layer is extracted
in ``.tmp-*`` and renamed into place, and what is deleted is first renamed to ``.rm-*``.
A crash leaves the hidden directory behind, and someone has to tell it from the same
directory of a command still at work, without a lock that every command would have to take.

So the name says who is at work: ``.new-<pid>-<start time>-<random>``. A pid alone could
have been reused by now; with the process's start time (as in :mod:`pydock.core.processes`)
it names one process for good. Once no such process exists, nobody will ever finish the
work, and :func:`sweep` removes the directory (``pydock prune`` sweeps them all).

The owner must be visible in this PID namespace: commands sharing one storage root from
different PID namespaces would take each other's work for leftovers.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydock.core.files import random_suffix, remove_tree
from pydock.core.processes import process_start_time


def hidden_name(prefix: str) -> str:
    """A fresh name for a work directory owned by the calling process."""
    pid = os.getpid()
    return f"{prefix}{pid}-{process_start_time(pid)}-{random_suffix()}"


def sweep(directory: Path, prefixes: tuple[str, ...]) -> None:
    """Remove the work directories in ``directory`` (names starting with one of
    ``prefixes``) whose owner is gone."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None or _owner_alive(name.removeprefix(prefix)):
            continue
        # Claimed first, by a rename only one sweeper can win; if this one crashes in turn,
        # the next sweep finds the directory under its name.
        doomed = directory / hidden_name(".rm-")
        try:
            os.rename(directory / name, doomed)
        except FileNotFoundError:  # another sweeper got there first
            continue
        remove_tree(doomed)


def _owner_alive(tag: str) -> bool:
    pid, _, rest = tag.partition("-")
    start, _, _ = rest.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return False  # named without an owner, by a pydock from before owners were recorded
    return process_start_time(int(pid)) == int(start)
