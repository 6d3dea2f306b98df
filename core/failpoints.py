"""Failpoints: crash on purpose at a named step, to test what a crash leaves behind.

``PYDOCK_FAILPOINT=STEP pydock ...`` makes the process that reaches STEP kill itself with
SIGKILL right there: no ``finally``, no ``atexit``, no cleanup of any kind, exactly what
``kill -9`` or the OOM killer does to it (its children live on). ``STEP:hang`` makes it
block there for good instead, as a step stuck on what a container's root holds would (a
FIFO where a file is read, say): only a signal ends it. The variable is read at
the step, in the process that reaches it: the container's monitor, forked by ``run``,
inherits the CLI's environment and crashes at the monitor's steps.

The steps, in the order a container's life reaches them:

==================================  ============================================================
``run.record-created``              CLI: the record exists (created), nothing else does
``net.leased``                      CLI, on the bridge: the container's address (and host ports)
                                    are leased under ``network/leases``, nothing else of its
                                    network exists
``run.storage-prepared``            CLI: the driver has prepared the container's storage
``run.cgroup-created``              CLI: the container's cgroup exists
``net.bridge-ready``                CLI, on the bridge: the bridge and the nftables table exist
``net.veth-created``                CLI: the container's network namespace and veth pair exist
``net.ports-published``             CLI: its ``-p`` ports are in the table's maps
``run.monitor-forked``              CLI: the monitor is forked; it goes on without the CLI
``monitor.before-start``            monitor: nothing forked yet
``monitor.started``                 monitor: the container's process is forked and waits, its
                                    pid not yet on record (it exits when the monitor dies)
``monitor.released``                monitor: the pid is on record and the process set free to
                                    run its command; not yet recorded as running
``setup.user-lookup``               the container's process (or an exec's): its root is set up,
                                    its capabilities limited, its passwd and group files not
                                    yet read
``monitor.recorded-running``        monitor: recorded as running
``monitor.container-exited``        monitor: the container has exited, which is not recorded
``rm.killed``                       rm (or the monitor, for ``--rm``): the container is dead
``rm.cgroup-removed``               rm: its cgroup is gone
``rm.network-released``             rm: its ports, veth and lease are gone
``rm.storage-removed``              rm: its storage is gone, its record is not
``rm.record-renamed``               rm: the record is renamed to a hidden ``.rm-*`` directory
``image.layer-extracted``           image import/load: a layer is extracted, not yet in place
``commit.layer-written``            commit: the layer's tar is written in the ``.commit-*``
                                    scratch directory, not yet imported
``pull.blob-verified``              pull: a layer blob is downloaded, verified and in
                                    ``blobs/sha256/``; others may be half-way in ``blobs/.tmp-*``
``snapshotter.storage-prepared``    snapshotter serve, Prepare or View: the driver has made the
                                    snapshot's container, which the graph does not name yet
``snapshotter.layer-made``          snapshotter serve, Commit: the new layer is in place under
                                    ``layers/``, which the graph does not name yet
``snapshotter.committed``           snapshotter serve, Commit: the graph names the committed
                                    snapshot; the active one's container is still there
``snapshotter.removed``             snapshotter serve, Remove: the graph names the snapshot no
                                    more; its layer or container is still there
``write.before-rename``             any atomic write (a record's state, an image config,
                                    ``repositories.json``): the new content is in its hidden
                                    ``.new-*`` file, not yet renamed over the old
==================================  ============================================================
"""

from __future__ import annotations

import os
import signal

VARIABLE = "PYDOCK_FAILPOINT"


def reached(step: str) -> None:
    """Die here if the environment names ``step``. Unset, this is one dictionary lookup:
    it sits on the path of every ``pydock run``."""
    wanted = os.environ.get(VARIABLE)
    if wanted == step:
        os.kill(os.getpid(), signal.SIGKILL)
    if wanted == f"{step}:hang":
        while True:
            signal.pause()
