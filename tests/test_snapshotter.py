"""``pydock snapshotter serve`` called over gRPC as containerd's proxy client calls it.

containerd's own suite (tests/test_containerd_suite.py) checks the trees; these tests check
what it does not: the status codes containerd turns into its errors, labels, usage and
filters, a graph that survives a restart and a SIGKILL at every step, and the refusals of the
command line. Each test serves a storage root and a socket of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from pydock.core.driver import Mount
from pydock.core.files import remove_tree
from pydock.core.runtime.mounted import in_container_root
from pydock.core.snapshotter.snapshots import Snapshotter
from pydock.drivers.copy import CopyDriver
from pydock.testing.cli import PYDOCK
from pydock.testing.snapshotter import Served

pytestmark = pytest.mark.needs_root

grpc = pytest.importorskip("grpc")
pb = pytest.importorskip("pydock.core.snapshotter.api.snapshots_pb2")
Code = grpc.StatusCode


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Start a service on the test's root (``tmp_path/root``) and socket; stopped after."""
    started: list[Served] = []

    def start(driver: str = "overlay", env: dict[str, str] | None = None) -> Served:
        served = Served(tmp_path / "root", tmp_path / "run" / "snapshots.sock", driver)
        started.append(served)
        return served.start(env)

    yield start
    for served in started:
        if served.process is not None:
            served.stop()
    # pydock's own removal: pytest's cannot remove a tree deeper than its recursion limit.
    with contextlib.suppress(FileNotFoundError):
        remove_tree(tmp_path / "root")


def prepare(stub: Any, key: str, parent: str = "", **labels: str) -> list[Mount]:
    reply = stub.Prepare(pb.PrepareSnapshotRequest(key=key, parent=parent, labels=labels))
    return [Mount(m.type, m.source, tuple(m.options)) for m in reply.mounts]


def commit(stub: Any, name: str, key: str, **labels: str) -> None:
    stub.Commit(pb.CommitSnapshotRequest(name=name, key=key, labels=labels))


def stat_of(stub: Any, key: str) -> Any:
    return stub.Stat(pb.StatSnapshotRequest(key=key)).info


def names(stub: Any, *filters: str) -> list[str]:
    return [info.name for reply in stub.List(pb.ListSnapshotsRequest(filters=filters))
            for info in reply.info]


def in_root(mounts: list[Mount], tmp_path: Path, task: Callable[[str], Any]) -> Any:
    """``task`` on the snapshot's tree, mounted as containerd would (in a private mount
    namespace, here)."""
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    return in_container_root(str(rootfs), mounts, task)


def write_file(path: str, data: bytes) -> Callable[[str], None]:
    def task(root: str) -> None:
        with open(os.path.join(root, path), "wb") as f:
            f.write(data)
    return task


def read_file(path: str) -> Callable[[str], str]:
    def task(root: str) -> str:
        with open(os.path.join(root, path)) as f:
            return f.read()
    return task


def code_of(call: Callable[[], object]) -> tuple[Any, str]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code(), caught.value.details()


def test_errors_carry_the_codes_containerd_maps_back(serve: Callable[..., Served]) -> None:
    stub = serve().stub()
    prepare(stub, "base")
    commit(stub, "layer", "base")
    prepare(stub, "work", "layer")
    stub.View(pb.ViewSnapshotRequest(key="look", parent="layer"))
    assert code_of(lambda: stat_of(stub, "nothing"))[0] == Code.NOT_FOUND
    assert code_of(lambda: prepare(stub, "work", "layer"))[0] == Code.ALREADY_EXISTS
    assert code_of(lambda: prepare(stub, "new", "missing"))[0] == Code.NOT_FOUND
    assert code_of(lambda: prepare(stub, "new", "work"))[0] == Code.INVALID_ARGUMENT
    assert code_of(lambda: commit(stub, "other", "look"))[0] == Code.FAILED_PRECONDITION
    assert code_of(lambda: commit(stub, "layer", "work"))[0] == Code.ALREADY_EXISTS
    assert code_of(lambda: stub.Mounts(pb.MountsRequest(key="layer")))[0] == (
        Code.FAILED_PRECONDITION)
    code, details = code_of(lambda: stub.Remove(pb.RemoveSnapshotRequest(key="layer")))
    # containerd's suite checks the word: "cannot remove" is how containerd's stores say it.
    assert code == Code.FAILED_PRECONDITION and "remove" in details
    assert code_of(lambda: stub.Update(pb.UpdateSnapshotRequest(
        info=pb.Info(name="layer"), update_mask={"paths": ["parent"]})))[0] == (
        Code.INVALID_ARGUMENT)
    assert code_of(lambda: names(stub, "name=="))[0] == Code.INVALID_ARGUMENT
    # Nothing was changed by the refused calls.
    assert names(stub) == ["layer", "look", "work"]


def test_malformed_requests_are_refused(serve: Callable[..., Served]) -> None:
    stub = serve().stub()
    huge = "k" * (3 << 20)
    # "" means "no parent" in containerd's API: a snapshot of that name could be neither.
    assert code_of(lambda: prepare(stub, ""))[0] == Code.INVALID_ARGUMENT
    prepare(stub, "a")
    assert code_of(lambda: commit(stub, "", "a"))[0] == Code.INVALID_ARGUMENT
    assert code_of(lambda: prepare(stub, "k" * 4097))[0] == Code.INVALID_ARGUMENT
    assert code_of(lambda: prepare(stub, "b", **{"l": "v" * 4096}))[0] == Code.INVALID_ARGUMENT
    # A message naming a 3 MiB key would pass gRPC's limit, and say nothing of the error.
    code, details = code_of(lambda: stat_of(stub, huge))
    assert code == Code.NOT_FOUND and len(details) < 1000
    # Snapshots with labels of 4 MiB in all are listed, in several messages.
    labels = {f"label-{i}": "v" * 4000 for i in range(250)}
    for key in ("x", "y", "z", "w", "v"):
        prepare(stub, key, **labels)
    assert names(stub) == ["a", "v", "w", "x", "y", "z"]


def test_labels_usage_and_filters(serve: Callable[..., Served], tmp_path: Path) -> None:
    stub = serve().stub()
    mounts = prepare(stub, "default/1/extract a", **{"containerd.io/snapshot.ref": "sha"})
    assert stat_of(stub, "default/1/extract a").labels == {"containerd.io/snapshot.ref": "sha"}
    in_root(mounts, tmp_path, write_file("data", os.urandom(1 << 20)))
    active = stub.Usage(pb.UsageRequest(key="default/1/extract a"))
    assert active.size >= 1 << 20 and active.inodes >= 2
    commit(stub, "default/2/sha256:aa", "default/1/extract a", **{"containerd.io/gc.root": "x"})
    info = stat_of(stub, "default/2/sha256:aa")
    # The commit's labels, not the active snapshot's; one timestamp for both.
    assert info.labels == {"containerd.io/gc.root": "x"} and info.kind == pb.COMMITTED
    assert info.created_at == info.updated_at
    committed = stub.Usage(pb.UsageRequest(key="default/2/sha256:aa"))
    assert committed.size >= 1 << 20

    updated = stub.Update(pb.UpdateSnapshotRequest(
        info=pb.Info(name="default/2/sha256:aa", labels={"a": "1", "b": "2"}),
        update_mask={"paths": ["labels.a", "labels.containerd.io/gc.root"]})).info
    # A path names a label to set, or without a value in the request, to remove.
    assert updated.labels == {"a": "1"} and updated.updated_at.ToNanoseconds() > (
        info.updated_at.ToNanoseconds())
    replaced = stub.Update(pb.UpdateSnapshotRequest(
        info=pb.Info(name="default/2/sha256:aa", labels={"c": "3"}))).info
    assert replaced.labels == {"c": "3"}

    prepare(stub, "default/3/run", "default/2/sha256:aa", role="app")
    assert names(stub, "kind==active") == ["default/3/run"]
    assert names(stub, 'parent=="default/2/sha256:aa",labels.role==app') == ["default/3/run"]
    assert names(stub, "labels.c", "labels.role") == ["default/2/sha256:aa", "default/3/run"]
    assert names(stub, "name~=^default/[23]/s") == ["default/2/sha256:aa"]


def test_the_graph_survives_a_restart(serve: Callable[..., Served], tmp_path: Path) -> None:
    served = serve()
    stub = served.stub()
    prepare(stub, "base")
    commit(stub, "layer", "base", keep="me")
    in_root(prepare(stub, "work", "layer"), tmp_path, write_file("note", b"kept"))
    stub.View(pb.ViewSnapshotRequest(key="look", parent="layer"))
    before = [info for reply in stub.List(pb.ListSnapshotsRequest()) for info in reply.info]

    code, err = served.stop()
    assert code == 0, err
    assert not served.address.exists(), "SIGTERM leaves no socket behind"
    stub = serve().stub()
    assert [info for reply in stub.List(pb.ListSnapshotsRequest()) for info in reply.info] == (
        before)
    mounts = [Mount(m.type, m.source, tuple(m.options))
              for m in stub.Mounts(pb.MountsRequest(key="work")).mounts]
    assert in_root(mounts, tmp_path, read_file("note")) == "kept"


def on_disk(root: Path, driver: str) -> tuple[set[str], set[str], set[str], set[str]]:
    """The layers and driver containers on disk, and those the stored graph names."""
    home = root / "snapshotter"
    graph = json.loads((home / "metadata.json").read_text())["snapshots"].values()
    homes = home / "storage" / driver
    containers = ({n for n in os.listdir(homes) if re.fullmatch("[0-9a-f]{64}", n)}
                  if homes.exists() else set())
    assert not [name for name in os.listdir(home) if name.startswith(".")], "scratch left"
    return (set(os.listdir(home / "layers")),
            {str(s["id"]) for s in graph if s["kind"] == "committed"},
            containers, {s["container"] for s in graph if s["container"]})


# Each step, the call that reaches it, and whether the call's change is there after the crash.
CRASHES = [
    ("snapshotter.storage-prepared", "prepare", False),
    ("write.before-rename", "prepare", False),
    ("snapshotter.layer-made", "commit", False),
    ("write.before-rename", "commit", False),
    ("snapshotter.committed", "commit", True),
    ("snapshotter.removed", "remove", True),
]


@pytest.mark.parametrize("driver", ["overlay", "copy"])
@pytest.mark.parametrize(("step", "call", "done"), CRASHES)
def test_a_kill_at_any_step_leaves_the_graph_before_or_after_the_call(
        serve: Callable[..., Served], tmp_path: Path, driver: str, step: str, call: str,
        done: bool) -> None:
    served = serve(driver)
    stub = served.stub()
    prepare(stub, "base")
    commit(stub, "layer", "base")
    if call != "prepare":
        in_root(prepare(stub, "work", "layer"), tmp_path, write_file("note", b"mine"))
    if call == "remove":
        commit(stub, "top", "work")
    served.stop()
    the_call: Callable[[Any], object] = {
        "prepare": lambda stub: prepare(stub, "work", "layer"),
        "commit": lambda stub: commit(stub, "top", "work"),
        "remove": lambda stub: stub.Remove(pb.RemoveSnapshotRequest(key="top")),
    }[call]

    crashing = serve(driver, {"PYDOCK_FAILPOINT": step})
    assert code_of(lambda: the_call(crashing.stub()))[0] == Code.UNAVAILABLE
    assert crashing.wait()[0] == -9
    assert crashing.address.is_socket(), "a SIGKILL leaves the socket"

    stub = serve(driver).stub()  # the next start replaces the dead service's socket
    before = {"prepare": {"layer"}, "commit": {"layer", "work"}, "remove": {"layer", "top"}}
    after = {"prepare": {"layer", "work"}, "commit": {"layer", "top"}, "remove": {"layer"}}
    assert set(names(stub)) == (after if done else before)[call]
    layers, committed, containers, active = on_disk(tmp_path / "root", driver)
    assert layers == committed and containers == active, "storage the graph does not name"
    if not done:  # the call, made again, works
        the_call(stub)
    if call == "commit":  # and the committed layer has the active snapshot's file
        mounts = prepare(stub, "check", "top")
        assert in_root(mounts, tmp_path, read_file("note")) == "mine"


def serve_command(root: Path, address: Path | str, driver: str = "overlay"
                  ) -> subprocess.CompletedProcess[str]:
    """A serve that is to be refused: it must end by itself, at once."""
    return subprocess.run([PYDOCK, "--root", str(root), "snapshotter", "serve", "--address",
                           str(address), "--storage", driver], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def refused(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 125, result
    assert result.stderr.count("\n") == 1 and words in result.stderr, result.stderr


def test_one_root_is_served_by_one_service(serve: Callable[..., Served],
                                           tmp_path: Path) -> None:
    served = serve()
    refused(serve_command(served.root, tmp_path / "run" / "other.sock"),
            "another pydock snapshotter")
    # Nor may a service on another root take over the first one's live socket.
    refused(serve_command(tmp_path / "root2", served.address), "socket of a running server")
    prepare(served.stub(), "still-served")


def test_the_socket_path_is_checked(tmp_path: Path) -> None:
    root = tmp_path / "root"
    refused(serve_command(root, "relative.sock"), "absolute path")
    refused(serve_command(root, tmp_path / ("x" * 120)), "longer than")
    not_a_socket = tmp_path / "file"
    not_a_socket.write_text("mine")
    refused(serve_command(root, not_a_socket), "not a socket")
    assert not_a_socket.read_text() == "mine"
    refused(serve_command(root, tmp_path / "p%2Fq.sock"), "'%'")
    # Others may not write where the socket is, sticky bit or not: while the service is
    # down they could listen on its name, and containerd would mount what they answer.
    for mode in (0o777, 0o1777):
        shared = tmp_path / f"shared-{mode:o}"
        shared.mkdir()
        os.chmod(shared, mode)
        refused(serve_command(root, shared / "s.sock"), "may be written by other users")
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    refused(serve_command(root, theirs / "run" / "s.sock"), "owned by uid 65534")


def test_the_root_is_roots_alone(tmp_path: Path) -> None:
    """Whoever can change the root can point a layer at any host directory, which
    containerd would then mount."""
    theirs = tmp_path / "theirs"
    (theirs / "snapshotter").mkdir(parents=True)
    os.chown(theirs / "snapshotter", 65534, 65534)
    refused(serve_command(theirs, tmp_path / "run" / "s.sock"), "owned by uid 65534")
    mine = tmp_path / "mine"
    (mine / "snapshotter").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.write_text("secret")
    (mine / "snapshotter" / "lock").symlink_to(victim)
    refused(serve_command(mine, tmp_path / "run" / "s.sock"), "lock")
    assert victim.read_text() == "secret"


def test_a_new_socket_directory_is_roots_alone(serve: Callable[..., Served]) -> None:
    served = serve()
    assert stat.S_IMODE(served.address.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(served.address.stat().st_mode) == 0o600


def test_a_root_is_served_with_the_driver_that_made_it(serve: Callable[..., Served],
                                                       tmp_path: Path) -> None:
    serve("overlay").stop()
    refused(serve_command(tmp_path / "root", tmp_path / "run" / "s.sock", "copy"),
            "made by driver 'overlay'")
    refused(serve_command(tmp_path / "root", tmp_path / "run" / "s.sock", "nosuch"),
            "unknown storage driver")


class _PlainBind(CopyDriver):
    """A driver that says "bind" with the type alone, as the core allows (the btrfs
    example does)."""

    def mounts(self, container_id: str, layers: Sequence[Path]) -> list[Mount]:
        return [Mount("bind", str(self.copy_dir(container_id)))]


def test_mounts_are_said_as_containerd_reads_them(tmp_path: Path) -> None:
    """containerd takes a bind mount from its options only, and a view must be read-only
    whatever the driver returns."""
    home = tmp_path / "snapshotter"
    snapshots = Snapshotter(home, _PlainBind(home / "storage" / "plain"), "plain")
    [active] = snapshots.prepare("a", "", {})
    assert active.type == "bind" and active.options == ("bind",)
    # (No commit here: the naive differ would mount on the host, outside a service.)
    [view] = snapshots.view("v", "", {})
    assert view.options == ("bind", "ro")
    for key in ("v", "a"):
        snapshots.remove(key)


def hostile_tree(root: str) -> None:
    """What a hostile image's layer or container can leave in a snapshot: a tree deeper than
    PATH_MAX and Python's recursion limit, a FIFO (a reader opening it blocks for good), a
    device node and symlinks out to the host's files."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEEP):
        os.mkdir("d", dir_fd=fd)
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    with open(os.open("bottom", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "w") as f:
        f.write("deep")
    os.close(fd)
    os.mkfifo(os.path.join(root, "fifo"))
    os.mknod(os.path.join(root, "null"), 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    os.symlink("/etc/shadow", os.path.join(root, "shadow"))
    os.symlink("../../../../../../..", os.path.join(root, "up"))


DEEP = 3000


def check_hostile_tree(root: str) -> list[str]:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(DEEP):
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
        os.close(fd)
        fd = below
    with open(os.open("bottom", os.O_RDONLY, dir_fd=fd)) as f:
        bottom = f.read()
    os.close(fd)
    kinds = [stat.S_IFMT(os.lstat(os.path.join(root, name)).st_mode)
             for name in ("fifo", "null", "shadow", "up")]
    return [bottom, *map(str, kinds), os.readlink(os.path.join(root, "shadow"))]


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_a_hostile_tree_is_committed_as_it_is(serve: Callable[..., Served], tmp_path: Path,
                                              driver: str) -> None:
    """Commit copies the tree without following a link, opening a FIFO or a device, and
    whatever its depth; the next snapshot sees exactly it."""
    stub = serve(driver).stub()
    in_root(prepare(stub, "a"), tmp_path, hostile_tree)
    commit(stub, "c", "a")
    seen = in_root(prepare(stub, "b", "c"), tmp_path, check_hostile_tree)
    assert seen == ["deep", str(stat.S_IFIFO), str(stat.S_IFCHR), str(stat.S_IFLNK),
                    str(stat.S_IFLNK), "/etc/shadow"]


def test_the_service_needs_root(tmp_path: Path) -> None:
    tmp_path.chmod(0o777)
    result = subprocess.run(
        ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", PYDOCK,
         "--root", str(tmp_path / "root"), "snapshotter", "serve", "--address",
         str(tmp_path / "run" / "s.sock")], capture_output=True, text=True, timeout=30)
    refused(result, "needs root")
    assert sorted(os.listdir(tmp_path)) == [], "nothing is made before the refusal"


def test_the_service_holds_no_host_mount(serve: Callable[..., Served], tmp_path: Path) -> None:
    """A filesystem the host unmounts is let go at once, even after a commit that mounted a
    root (copy's naive differ): nothing of the host stays pinned in a namespace of the
    service's (a loop device would stay attached)."""
    from pydock.core.syscalls import MNT_DETACH, mount, umount2
    from pydock.testing.cli import processes_using

    host = tmp_path / "host-mount"
    host.mkdir()
    mount("tmpfs", str(host), "tmpfs")
    try:
        served = serve("copy")
        stub = served.stub()
        in_root(prepare(stub, "a"), tmp_path, write_file("f", b"x"))
        commit(stub, "c", "a")
    finally:
        umount2(str(host), MNT_DETACH)
    assert served.process is not None
    assert served.process.pid not in processes_using(host)


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_a_sparse_file_is_committed_sparse(serve: Callable[..., Served], tmp_path: Path,
                                           driver: str) -> None:
    """A build step's `truncate -s 1T` costs a few blocks in the layer too, not the disk."""
    def sparse(root: str) -> None:
        with open(os.path.join(root, "hole"), "wb") as f:
            f.truncate(1 << 40)
            f.write(b"start")

    stub = serve(driver).stub()
    in_root(prepare(stub, "a"), tmp_path, sparse)
    commit(stub, "c", "a")
    assert stub.Usage(pb.UsageRequest(key="c")).size < 1 << 20


def test_a_stopping_service_removes_its_own_socket_only(tmp_path: Path) -> None:
    address = tmp_path / "run" / "s.sock"
    first = Served(tmp_path / "root1", address, "overlay").start()
    try:
        address.unlink()  # as if it were stale, and then taken by another service
        second = Served(tmp_path / "root2", address, "overlay").start()
        try:
            assert first.stop()[0] == 0
            assert address.is_socket()
            prepare(second.stub(), "still-served")
        finally:
            second.stop()
    finally:
        if first.process is not None:
            first.stop()
    assert not address.exists()
