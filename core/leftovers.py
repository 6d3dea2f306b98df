"""Scratch names: named after the process that owns them, swept once it is gone.

What pydock makes or deletes in several steps, it does under a hidden name beside the final
place, so that a crash midway never leaves anything half-done under a real name. A crash
leaves the hidden entry behind, and someone has to tell it from the same entry of a command
still at work, without a lock that every command would have to take.

So the name says who is at work: ``<prefix><pid>-<start time>-<random>``
(:func:`pydock.core.files.hidden_name`). A pid alone could have been reused by now; with the
process's start time (as in :mod:`pydock.core.processes`) it names one process for good.
Once no such process exists, nobody will ever finish the work, and :func:`sweep` removes the
entry; ``pydock prune`` sweeps every place below. A name of the prefix without an owner
(made by a pydock from before owners were recorded) counts as abandoned.

Every scratch name pydock makes in a storage root, where it lives, who makes it and who
sweeps it (all swept by ``prune``, through :func:`pydock.core.containers.cleanup.sweep`):

==================================  ======================================  ================
where                               made by                                 swept by
==================================  ======================================  ================
``<root>/.commit-*`` (directory)    ``commit``: the layer built from a      cleanup.sweep
                                    container's changes, and its tar
``<root>/.tmp-*`` (file)            :func:`pydock.core.files.scratch_file`  cleanup.sweep
                                    where the filesystem has no O_TMPFILE:
                                    unlinked at once (the default image's
                                    and bench's image tars)
``containers/.new-*`` (directory)   ``run``: a record being created         StateStore.sweep
``containers/.rm-*`` (directory)    ``rm``, ``prune``: a record being       StateStore.sweep
                                    deleted; also what :func:`sweep` claims
``containers/<name>/.new-*``        an update of the record's               StateStore.sweep
(file)                              ``state.json`` (atomic write)
``images/.new-*`` (file)            ``repositories.json`` being replaced    ImageStore.sweep
``images/configs/.new-*`` (file)    an image config being stored            ImageStore.sweep
``images/manifests/.new-*`` (file)  the list of an image's manifests        BlobStore.sweep
``blobs/.tmp-*`` (file)             ``pull``, ``push``: a blob being        BlobStore.sweep
                                    downloaded or written (a verified blob
                                    is renamed into ``blobs/sha256/``)
``layers/.tmp-*`` (directory)       import, load, commit: a layer being     ImageStore.sweep
                                    extracted
``layers/.tmp-*`` (file)            ``scratch_file`` without O_TMPFILE: an  ImageStore.sweep
                                    archive's decompressed layer
``layers/.rm-*`` (directory)        ``image rm``: a layer being deleted     ImageStore.sweep
``bench/.storage-*`` (directory)    ``bench``: the driver homes of its      cleanup.sweep;
                                    containers                              the next bench,
                                                                            through drivers
``bench/.rm-*`` (directory)         what a sweep of ``bench/`` claims       cleanup.sweep
==================================  ======================================  ================

Not hidden names, and not swept here: a driver's work directories live inside the
container's own directory under ``storage/<driver>/<id>`` (overlay's ``work``, bind's
``shared-build``), which go with the container, or with its orphaned storage
(:func:`pydock.core.containers.cleanup.remove_orphaned_storage`). ``bench/storage``, the
one storage of every bench from before owners were recorded, is left to the next ``bench``.
Outside the root, ``image save`` and ``export`` write beside their output
(``.<output>.<random>.tmp``, ``.partial``) and remove that on any error but SIGKILL;
``prune`` knows only the root.

A leftover that cannot be removed (a mount left on it, a file made immutable) never fails
``prune``: it is reported and stays under a ``.rm-*`` name that the next ``prune`` tries
again, once the process that renamed it is gone.

The owner must be visible in this PID namespace: commands sharing one storage root from
different PID namespaces would take each other's work for leftovers.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from pydock.core.errors import PydockError
from pydock.core.files import hidden_name, remove_tree
from pydock.core.processes import process_start_time


def sweep(directory: Path, prefixes: tuple[str, ...],
          remove: Callable[[Path], None] | None = None) -> list[str]:
    """Remove the scratch entries in ``directory`` (names starting with one of ``prefixes``)
    whose owner is gone, with ``remove`` if given (bench's storage goes through its
    drivers); what could not be removed, said for a warning."""
    try:
        names = os.listdir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return []
    problems = []
    for name in names:
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        if prefix is None or _owner_alive(name.removeprefix(prefix)):
            continue
        # Claimed first, by a rename only one sweeper can win; if this one crashes in turn,
        # the next sweep finds the entry under its name.
        doomed = directory / hidden_name(".rm-")
        try:
            os.rename(directory / name, doomed)
        except FileNotFoundError:  # another sweeper got there first
            continue
        except OSError as exc:
            problems.append(f"cannot remove {directory / name}: {exc.strerror}")
            continue
        try:
            if remove is not None:
                remove(doomed)
            elif doomed.is_dir() and not doomed.is_symlink():
                remove_tree(doomed)
            else:
                doomed.unlink()
        except (OSError, PydockError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            problems.append(f"cannot remove {directory / name} (now {doomed.name}): "
                            f"{reason}; prune tries again")
    return problems


def _owner_alive(tag: str) -> bool:
    pid, _, rest = tag.partition("-")
    start, _, _ = rest.partition("-")
    if not (pid.isdigit() and start.isdigit()):
        return False  # named without an owner, by a pydock from before owners were recorded
    return process_start_time(int(pid)) == int(start)
