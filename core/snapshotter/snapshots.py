"""containerd's snapshotter model over one pydock storage driver.

containerd knows three kinds of snapshot. A *committed* one is immutable and may be a parent;
here it is a layer directory in the overlay format (whiteouts as 0/0 character devices,
opaque directories by xattr), ``layers/<id>``, the format every pydock driver reads. An
*active* one is writable and a *view* read-only; each is a container of the driver, prepared
on the layers of its parent's chain, whose mounts containerd performs on the host.
``Commit`` turns an active snapshot into a new layer as ``pydock commit`` does: a copy of the
driver's changes directory (overlay's upper directory), or, for a driver without one, the
changes the core's naive differ finds between the mounted root and the parent's layers.

Every call holds one lock: a snapshotter serves one node's image unpacking and container
starts, where calls are short or sequential anyway, and the graph stays simple to reason
about. The naive differ mounts a container's root in a thread's own mount namespace
(:func:`pydock.core.snapshotter.layer.in_own_mount_namespace`), invisible to the host.

The error classes carry the gRPC status containerd's proxy client turns back into its own
errors (errdefs): NotFound, AlreadyExists, FailedPrecondition, InvalidArgument. Their
messages end as containerd's do (``: not found``), a suffix the client trims off.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

from pydock.core import failpoints
from pydock.core.driver import Mount, StorageDriver, Usage, tree_usage
from pydock.core.errors import PydockError
from pydock.core.files import remove_tree
from pydock.core.ids import HEX64
from pydock.core.leftovers import sweep
from pydock.core.snapshotter import filters
from pydock.core.snapshotter.graph import ACTIVE, COMMITTED, VIEW, Graph, Snapshot
from pydock.core.snapshotter.layer import build_layer
from pydock.core.snapshotter.mounts import as_served
from pydock.core.syscalls import syncfs

# containerd's own limits (labels.Validate): a label's key and value take 4 KiB at most. A
# key or name gets as much: containerd's are far shorter, and a longer one would only make
# the graph, and every List, heavier.
MAX_LABEL_BYTES = 4096
MAX_KEY_BYTES = 4096
# All of a snapshot's labels: its Info must fit in a gRPC message (4 MiB) with room to spare.
MAX_LABELS_BYTES = 1 << 20


class NotFound(PydockError):
    pass


class AlreadyExists(PydockError):
    pass


class FailedPrecondition(PydockError):
    pass


class InvalidArgument(PydockError):
    pass


class Info(NamedTuple):
    name: str
    snapshot: Snapshot


class Snapshotter:
    """The snapshots of one service, stored under ``home`` (``<root>/snapshotter``)."""

    def __init__(self, home: Path, driver: StorageDriver, driver_name: str) -> None:
        self.home = home
        self.driver = driver
        self.layers_dir = home / "layers"
        # The layer under a snapshot without parent: drivers build on at least one layer,
        # and its mode is the one containerd expects of a new root, 0755 (the suite's
        # RootPermission case).
        self.empty_layer = home / "empty"
        self.metadata = home / "metadata.json"
        self._lock = threading.Lock()
        for directory in (home, self.layers_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
        self.empty_layer.mkdir(exist_ok=True)
        os.chmod(self.empty_layer, 0o755)
        graph = Graph.load(self.metadata)
        if graph is None:
            graph = Graph(driver=driver_name)
            graph.save(self.metadata)
        elif graph.driver != driver_name:
            raise PydockError(f"the snapshots in {home} were made by driver {graph.driver!r}, "
                              f"not {driver_name!r}: serve them with --storage {graph.driver}, "
                              "or give another --root")
        self.graph = graph
        # What a crash left, made before or removed after the graph's change.
        self._sweep()

    # -- containerd's calls ------------------------------------------------

    def prepare(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        return self._create(ACTIVE, key, parent, labels)

    def view(self, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        return self._create(VIEW, key, parent, labels)

    def mounts(self, key: str) -> list[Mount]:
        with self._lock:
            snapshot = self._get(key)
            if snapshot.kind == COMMITTED:
                raise FailedPrecondition(f"snapshot {_said(key)} is committed, not active "
                                         "or view: failed precondition")
            return self._mounts(key, snapshot)

    def commit(self, name: str, key: str, labels: dict[str, str]) -> None:
        _check_key(name)
        _check_labels(labels)
        with self._lock:
            active = self._get(key)
            if name in self.graph.snapshots:
                raise AlreadyExists(f"snapshot {_said(name)}: already exists")
            if active.kind != ACTIVE:
                raise FailedPrecondition(f"snapshot {_said(key)} is a {active.kind} snapshot, "
                                         "only an active one can be committed: failed "
                                         "precondition")
            layer_id = self.graph.new_id()
            layer = self.layers_dir / str(layer_id)
            # Built under a hidden name, then renamed: a crash leaves no half layer under
            # its final name, only a directory the next start sweeps.
            scratch = self.layers_dir / f".new-{layer_id}"
            try:
                build_layer(self.driver, active.container, self._chain(key), scratch)
                usage = tree_usage(scratch)
                os.rename(scratch, layer)
                # On disk before the graph names it: after a power cut, a committed layer
                # must not come back with files cut short.
                _sync(self.layers_dir)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    remove_tree(scratch)
            failpoints.reached("snapshotter.layer-made")
            now = time.time_ns()
            committed = Snapshot(id=layer_id, kind=COMMITTED, parent=active.parent,
                                 labels=dict(labels), created=now, updated=now,
                                 usage=(usage.bytes, usage.inodes))
            try:
                self._change({key: None, name: committed})
            except BaseException:
                remove_tree(layer)
                raise
            failpoints.reached("snapshotter.committed")
            self._remove_storage(active)

    def remove(self, key: str) -> None:
        with self._lock:
            snapshot = self._get(key)
            children = self.graph.children(key)
            if children:
                raise FailedPrecondition(
                    f"cannot remove snapshot {_said(key)}: {len(children)} other snapshot(s) "
                    "have it as their parent, remove them first: failed precondition")
            self._change({key: None})
            failpoints.reached("snapshotter.removed")
            self._remove_storage(snapshot)

    def stat(self, key: str) -> Info:
        with self._lock:
            return Info(key, self._get(key))

    def update(self, key: str, labels: dict[str, str], paths: Sequence[str]) -> Info:
        """Only labels can change. No ``paths`` replaces them all, as containerd's own
        stores do; ``labels`` too; ``labels.KEY`` sets or (without a value) removes one."""
        _check_labels(labels)
        with self._lock:
            snapshot = self._get(key)
            updated = dict(snapshot.labels)
            for path in paths or ["labels"]:
                if path == "labels":
                    updated = dict(labels)
                elif path.startswith("labels."):
                    label = path.removeprefix("labels.")
                    updated[label] = labels.get(label, "")
                else:
                    raise InvalidArgument(f"cannot update {_said(path)!r} of snapshot "
                                          f"{_said(key)}: only labels can change: invalid "
                                          "argument")
            updated = {k: v for k, v in updated.items() if v}
            _check_labels(updated)
            snapshot = dataclasses.replace(snapshot, labels=updated, updated=time.time_ns())
            self._change({key: snapshot})
            return Info(key, snapshot)

    def usage(self, key: str) -> Usage:
        with self._lock:
            snapshot = self._get(key)
        if snapshot.kind == COMMITTED:
            return Usage(*snapshot.usage)
        # Outside the lock: walking a container's tree takes seconds at a few hundred
        # thousand files, and containerd's CRI asks for every active snapshot's usage
        # every few seconds; the other calls need not wait for it.
        try:
            return self.driver.usage(snapshot.container)
        except FileNotFoundError:
            raise NotFound(f"snapshot {_said(key)} does not exist: not found") from None

    def walk(self, wanted: Iterable[str]) -> list[Info]:
        try:
            parsed = filters.parse(wanted)
        except filters.FilterError as exc:
            raise InvalidArgument(f"{exc}: invalid argument") from None
        with self._lock:
            # Snapshots are replaced, never changed in place: this copy stays as it was, and
            # the matching (a ~= expression may be slow) holds up no other call.
            snapshots = sorted(self.graph.snapshots.items())
        return [Info(key, s) for key, s in snapshots
                if filters.matches(parsed, filters.snapshot_fields(s.kind, key, s.parent,
                                                                   s.labels))]

    def cleanup(self) -> None:
        """Remove storage no snapshot names: containerd calls this after its garbage
        collector has removed the snapshots it no longer needs."""
        with self._lock:
            self._sweep()

    # -- the graph ------------------------------------------------------------

    def _create(self, kind: str, key: str, parent: str, labels: dict[str, str]) -> list[Mount]:
        _check_key(key)
        _check_labels(labels)
        with self._lock:
            if key in self.graph.snapshots:
                raise AlreadyExists(f"snapshot {_said(key)}: already exists")
            if parent:
                below = self.graph.snapshots.get(parent)
                if below is None:
                    raise NotFound(f"parent snapshot {_said(parent)} does not exist: "
                                   "not found")
                if below.kind != COMMITTED:
                    raise InvalidArgument(f"parent snapshot {_said(parent)} is not committed: "
                                          "invalid argument")
            container = secrets.token_hex(32)
            now = time.time_ns()
            snapshot = Snapshot(id=self.graph.new_id(), kind=kind, parent=parent,
                                labels=dict(labels), created=now, updated=now,
                                container=container)
            layers = self._layers(parent)
            try:
                self.driver.prepare(container, layers)
                failpoints.reached("snapshotter.storage-prepared")
                mounts = self._driver_mounts(container, layers, kind)
                self._change({key: snapshot})
            except BaseException:
                self.driver.remove(container)
                raise
            return mounts

    def _change(self, changes: dict[str, Snapshot | None]) -> None:
        """Apply ``changes`` (None removes a key) and store the graph; on failure the graph
        in memory is left as it was, as is the one on disk."""
        before = dict(self.graph.snapshots)
        for key, snapshot in changes.items():
            if snapshot is None:
                del self.graph.snapshots[key]
            else:
                self.graph.snapshots[key] = snapshot
        try:
            self.graph.save(self.metadata)
        except BaseException:
            self.graph.snapshots = before
            raise

    def _get(self, key: str) -> Snapshot:
        snapshot = self.graph.snapshots.get(key)
        if snapshot is None:
            raise NotFound(f"snapshot {_said(key)} does not exist: not found")
        return snapshot

    def _chain(self, key: str) -> list[Path]:
        return self._layers(self.graph.snapshots[key].parent)

    def _layers(self, parent: str) -> list[Path]:
        """The layers a snapshot on ``parent`` is made of, bottom first."""
        if not parent:
            return [self.empty_layer]
        chain = [*self.graph.chain(parent), self.graph.snapshots[parent]]
        return [self.layers_dir / str(s.id) for s in chain]

    def _mounts(self, key: str, snapshot: Snapshot) -> list[Mount]:
        return self._driver_mounts(snapshot.container, self._chain(key), snapshot.kind)

    def _driver_mounts(self, container: str, layers: list[Path], kind: str) -> list[Mount]:
        mounts = self.driver.mounts(container, layers)
        for mount in mounts:
            if mount.target != "/":
                # containerd mounts every mount a snapshotter returns on the root itself.
                raise PydockError(f"driver {self.driver.name!r} mounts something on "
                                  f"{mount.target}, which containerd cannot be asked to do: "
                                  "a snapshotter's mounts all make the root")
        return as_served(mounts, read_only=kind == VIEW)

    # -- storage ----------------------------------------------------------------

    def _remove_storage(self, snapshot: Snapshot) -> None:
        """Remove what the graph no longer names. A failure is only said: the call has
        happened, and the next Cleanup or start tries again."""
        if snapshot.kind == COMMITTED:
            _removing(self.layers_dir / str(snapshot.id), remove_tree)
        else:
            _removing(self.driver.home / snapshot.container, lambda _: self.driver.remove(
                snapshot.container))

    def _sweep(self) -> None:
        """Remove the layers and driver containers that no snapshot names, and the graph's
        scratch copies a crash left."""
        for problem in sweep(self.home, (".new-", ".rm-")):
            _warn(problem)
        snapshots = self.graph.snapshots.values()
        layers = {str(s.id) for s in snapshots if s.kind == COMMITTED}
        for name in os.listdir(self.layers_dir):
            if name not in layers:
                _removing(self.layers_dir / name, remove_tree)
        containers = {s.container for s in snapshots if s.kind != COMMITTED}
        try:
            names = os.listdir(self.driver.home)
        except FileNotFoundError:
            return
        for name in names:
            if re.fullmatch(HEX64, name) and name not in containers:
                _removing(self.driver.home / name, lambda path: self.driver.remove(path.name))


def _removing(path: Path, remove: Callable[[Path], None]) -> None:
    try:
        remove(path)
    except FileNotFoundError:
        pass
    except (OSError, PydockError) as exc:
        _warn(f"cannot remove {path}: {exc}; Cleanup tries again")


def _warn(message: str) -> None:
    print(f"pydock: warning: {' '.join(message.split())}", file=sys.stderr, flush=True)


def _sync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


def _said(key: str) -> str:
    """A key as a message shows it: a long one, cut (gRPC refuses a status message of
    megabytes, and then says nothing of the error)."""
    return key if len(key) <= 200 else f"{key[:200]}..."


def _check_key(key: str) -> None:
    if not key:
        # "" is "no parent" everywhere in containerd's API: a snapshot so named could be
        # neither a parent nor removed.
        raise InvalidArgument("a snapshot key or name must not be empty: invalid argument")
    if len(key.encode(errors="surrogateescape")) > MAX_KEY_BYTES:
        raise InvalidArgument(f"a snapshot key or name of more than {MAX_KEY_BYTES} bytes "
                              f"({_said(key)!r}): invalid argument")


def _check_labels(labels: dict[str, str]) -> None:
    total = 0
    for label, value in labels.items():
        size = len(label.encode(errors="surrogateescape")) + len(
            value.encode(errors="surrogateescape"))
        if size > MAX_LABEL_BYTES:
            raise InvalidArgument(f"label {_said(label)!r}: key and value take more than "
                                  f"{MAX_LABEL_BYTES} bytes: invalid argument")
        total += size
    if total > MAX_LABELS_BYTES:
        raise InvalidArgument(f"labels of more than {MAX_LABELS_BYTES} bytes in all: "
                              "invalid argument")
