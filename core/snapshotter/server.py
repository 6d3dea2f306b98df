"""``pydock snapshotter serve``: containerd's Snapshots gRPC API on a unix socket.

containerd dials the socket named in its ``[proxy_plugins.NAME]`` section and calls the
service ``containerd.services.snapshots.v1.Snapshots`` there, through its proxy client
(snapshots/proxy), which turns the gRPC status codes set here back into its own errors.
The ``snapshotter`` field of each request is that section's name; one service serves one
driver, so it is not needed to tell drivers apart, and is ignored.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any, TypeVar

from pydock.core.driver import Mount
from pydock.core.errors import PydockError
from pydock.core.snapshotter.graph import ACTIVE, COMMITTED, VIEW
from pydock.core.snapshotter.places import (
    ServedSocket,
    claim,
    listening_path,
    make_private_dir,
    prepare_socket_path,
)
from pydock.core.snapshotter.snapshots import (
    AlreadyExists,
    FailedPrecondition,
    Info,
    InvalidArgument,
    NotFound,
    Snapshotter,
)

T = TypeVar("T")
# Snapshots per List message: containerd's own service sends them in batches of 100 too.
LIST_BATCH = 100
LIST_BATCH_BYTES = 3 << 20
# How long a SIGTERM waits for the calls under way (an unpack's Commit) before cutting them.
STOP_GRACE_SECONDS = 10


def serve(root: Path, address: str, driver_name: str, debug: bool) -> None:
    """Serve ``driver_name``'s snapshots under ``root`` on the socket ``address`` until
    SIGINT or SIGTERM."""
    from pydock.core.plugins import DriverRegistry, availability_of, driver_home

    cls = DriverRegistry().driver_class(driver_name)
    home = root / "snapshotter"
    make_private_dir(root)
    make_private_dir(home)
    storage = driver_home(home, driver_name)
    availability = availability_of(cls, storage)
    if not availability.ok:
        raise PydockError(f"storage driver {driver_name!r} is not available here: "
                          f"{availability.reason}")
    lock = claim(home, root)
    try:
        prepare_socket_path(Path(address))
        snapshotter = Snapshotter(home, cls(storage), driver_name)
        _run(snapshotter, address, driver_name, root, debug)
    finally:
        os.close(lock)


def _run(snapshotter: Snapshotter, address: str, driver_name: str, root: Path,
         debug: bool) -> None:
    import grpc

    from pydock.core.snapshotter.api import snapshots_pb2_grpc

    # SIGINT and SIGTERM wake the main thread through a pipe the interpreter's own C-level
    # handler writes to. A Python handler that set a threading.Event could run while the
    # main thread held that Event's lock inside wait(), and deadlock on it; signals blocked
    # for sigwait() would stay blocked in any program a driver runs.
    wake_read, wake_write = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: None)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(  # type: ignore[no-untyped-call]
        Service(snapshotter, debug), server)
    # The socket is created 0600 (root's alone: whoever can call it can have any host
    # directory of the root mounted by containerd), never briefly open to others.
    umask = os.umask(0o177)
    try:
        if not server.add_insecure_port(f"unix:{listening_path(Path(address))}"):
            raise PydockError(f"cannot listen on {address}")
        server.start()
    finally:
        os.umask(umask)
    served = ServedSocket(Path(address))
    try:
        print(f"pydock: serving {driver_name} snapshots of {root} on {address}",
              file=sys.stderr, flush=True)
        os.read(wake_read, 1)
    finally:
        server.stop(STOP_GRACE_SECONDS).wait()
        served.remove()


class Service:
    """The servicer: each method turns a request into a :class:`Snapshotter` call."""

    def __init__(self, snapshotter: Snapshotter, debug: bool) -> None:
        import grpc

        from pydock.core.snapshotter.api import mount_pb2, snapshots_pb2

        self.snapshots = snapshotter
        self.debug = debug
        self.pb = snapshots_pb2
        self.mount_pb2 = mount_pb2
        self.kinds = {ACTIVE: snapshots_pb2.ACTIVE, VIEW: snapshots_pb2.VIEW,
                      COMMITTED: snapshots_pb2.COMMITTED}
        self.codes: dict[type[Exception], Any] = {NotFound: grpc.StatusCode.NOT_FOUND,
                      AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
                      FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
                      InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT}
        self.unknown = grpc.StatusCode.UNKNOWN

    def Prepare(self, request: Any, context: Any) -> Any:
        return self.pb.PrepareSnapshotResponse(mounts=self._mounts(self._call(
            context, lambda: self.snapshots.prepare(request.key, request.parent,
                                                    dict(request.labels)))))

    def View(self, request: Any, context: Any) -> Any:
        return self.pb.ViewSnapshotResponse(mounts=self._mounts(self._call(
            context, lambda: self.snapshots.view(request.key, request.parent,
                                                 dict(request.labels)))))

    def Mounts(self, request: Any, context: Any) -> Any:
        return self.pb.MountsResponse(mounts=self._mounts(self._call(
            context, lambda: self.snapshots.mounts(request.key))))

    def Commit(self, request: Any, context: Any) -> Any:
        self._call(context, lambda: self.snapshots.commit(request.name, request.key,
                                                          dict(request.labels)))
        return self._empty()

    def Remove(self, request: Any, context: Any) -> Any:
        self._call(context, lambda: self.snapshots.remove(request.key))
        return self._empty()

    def Stat(self, request: Any, context: Any) -> Any:
        return self.pb.StatSnapshotResponse(info=self._info(self._call(
            context, lambda: self.snapshots.stat(request.key))))

    def Update(self, request: Any, context: Any) -> Any:
        return self.pb.UpdateSnapshotResponse(info=self._info(self._call(
            context, lambda: self.snapshots.update(request.info.name, dict(request.info.labels),
                                                   list(request.update_mask.paths)))))

    def List(self, request: Any, context: Any) -> Iterator[Any]:
        infos = self._call(context, lambda: self.snapshots.walk(list(request.filters)))
        batch: list[Any] = []
        size = 0
        for info in infos:
            message = self._info(info)
            # A message may not pass gRPC's 4 MiB: a batch ends at LIST_BATCH snapshots or
            # LIST_BATCH_BYTES, whichever comes first (labels make snapshots of any size).
            if batch and (len(batch) == LIST_BATCH or size + message.ByteSize() > LIST_BATCH_BYTES):
                yield self.pb.ListSnapshotsResponse(info=batch)
                batch, size = [], 0
            batch.append(message)
            size += message.ByteSize()
        if batch:
            yield self.pb.ListSnapshotsResponse(info=batch)

    def Usage(self, request: Any, context: Any) -> Any:
        usage = self._call(context, lambda: self.snapshots.usage(request.key))
        return self.pb.UsageResponse(size=usage.bytes, inodes=usage.inodes)

    def Cleanup(self, request: Any, context: Any) -> Any:
        self._call(context, self.snapshots.cleanup)
        return self._empty()

    def _call(self, context: Any, call: Callable[[], T]) -> T:
        try:
            return call()
        except (PydockError, OSError) as exc:
            code = self.codes.get(type(exc), self.unknown)
            if code is self.unknown:
                print(f"pydock: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
            context.abort(code, str(exc))
        except Exception as exc:
            # A bug: said in one line (with the traceback under --debug), and to containerd.
            if self.debug:
                import traceback

                traceback.print_exc()
            message = f"internal error: {type(exc).__name__}: {exc}"
            print(f"pydock: {message}", file=sys.stderr, flush=True)
            context.abort(self.unknown, message)
        raise AssertionError("context.abort raises")

    def _mounts(self, mounts: list[Mount]) -> list[Any]:
        return [self.mount_pb2.Mount(type=m.type, source=m.source, options=list(m.options))
                for m in mounts]

    def _info(self, info: Info) -> Any:
        snapshot = info.snapshot
        message = self.pb.Info(name=info.name, parent=snapshot.parent,
                               kind=self.kinds[snapshot.kind], labels=snapshot.labels)
        message.created_at.FromNanoseconds(snapshot.created)
        message.updated_at.FromNanoseconds(snapshot.updated)
        return message

    @staticmethod
    def _empty() -> Any:
        from google.protobuf import empty_pb2

        return empty_pb2.Empty()
