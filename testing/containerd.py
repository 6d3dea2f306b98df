"""A private containerd for tests and benchmarks, with pydock snapshotters as its proxy plugins.

:func:`private_containerd` starts Debian's containerd 1.6 (``containerd --config``) on a
directory of its own with the CRI plugin disabled, and one ``pydock --root ROOT snapshotter
serve --address SOCKET --storage DRIVER`` per driver asked for, each a child process the
caller can stop, start again or kill -9 (:class:`Snapshotter`). containerd knows each serve as
the proxy plugin ``pydock-<driver>``: ``ctr run --snapshotter pydock-overlay ...``. It dials
lazily and reconnects by itself, so a serve may be down while containerd runs.

Where things go, and why:

* The directory is ``/tmp/ctd-XXXXXXXX``, short on purpose: containerd's sockets and the
  serves' live in it, and a unix socket's path holds at most 107 bytes (pytest's temporary
  directories are far longer). containerd's config, root, state and log, too.
* The pydock roots are the caller's (a test's ``tmp_path``, a btrfs mount): what a
  serve keeps there is what the caller checks.
* containerd 1.6 puts its shims' sockets, the stdio fifos ``ctr`` makes and runc's state
  under ``/run/containerd`` whatever ``state`` says (``defaults.DefaultStateDir`` is a
  constant there). The names in it are hashed or namespaced, so another containerd is not
  disturbed; the directory is removed at the end only if this helper made it, and then
  only its empty directories (another private containerd may be at work in it).

The stop leaves nothing: every task is killed and every container deleted, containerd gets
SIGTERM (its shims go with their tasks), the serves get SIGTERM and must exit 0. What is then
still there is a leak of containerd's or of a serve's: mounts under the directory are
unmounted, shims of this containerd killed, and :class:`LeftBehind` says what there was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydock.testing.cli import mounts_under
from pydock.testing.snapshotter import Served

CONTAINERD = "containerd"
CTR = "ctr"
# Fixed in containerd 1.6 (runtime/v2/shim/util_unix.go: socketRoot), whatever `state` says.
SHIM_STATE = Path("/run/containerd")
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
# The namespace of Containerd.wait_until_reachable's probes and collect_garbage's leases.
REACHABLE = "pydock-reachable"


class LeftBehind(RuntimeError):
    """What a stop had to clean up by force: mounts, shims, a serve that would not stop
    or not cleanly."""


def have_containerd() -> bool:
    return shutil.which(CONTAINERD) is not None and shutil.which(CTR) is not None


@dataclass
class Snapshotter:
    """One ``pydock snapshotter serve`` child (:class:`pydock.testing.snapshotter.Served`),
    known to containerd as the proxy plugin ``pydock-<driver>``."""

    served: Served

    @property
    def name(self) -> str:
        return f"pydock-{self.served.driver}"

    @property
    def address(self) -> Path:
        return self.served.address

    @property
    def running(self) -> bool:
        return self.served.process is not None

    def start(self, env: dict[str, str] | None = None) -> None:
        """Start the serve (with ``env`` added, a failpoint say) and wait until it answers."""
        self.served.start(env)

    def stop(self) -> None:
        """SIGTERM, as a service manager stops it: it must exit 0 and take its socket along."""
        if not self.running:
            return
        code, err = self.served.stop()
        if code != 0:
            raise RuntimeError(f"{self.name} exited {code} on SIGTERM: {err}")
        if self.address.exists():
            raise RuntimeError(f"{self.name} left its socket {self.address} behind")

    def kill(self) -> None:
        """kill -9 (or, after a failpoint's, reap it): no clean-up, the socket file stays."""
        if self.running:
            self.served.kill()

    def restart(self) -> None:
        self.stop()
        self.start()


@dataclass
class Containerd:
    """A running private containerd and its snapshotters, by driver name."""

    directory: Path
    process: subprocess.Popen[bytes]
    snapshotters: dict[str, Snapshotter]

    @property
    def address(self) -> Path:
        return self.directory / "containerd.sock"

    def ctr(self, *args: str, namespace: str = "default", timeout: float = 120,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """``ctr --address SOCKET -n NAMESPACE ARGS``; with ``check``, a failure raises with
        the command line, its output and containerd's last log lines."""
        command = [CTR, "--address", str(self.address), "-n", namespace, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {result.returncode}\nstdout: {result.stdout}\n"
                f"stderr: {result.stderr}\ncontainerd's log:\n{self.log_tail()}")
        return result

    def log_tail(self, lines: int = 30) -> str:
        log = (self.directory / "containerd.log").read_text(errors="replace")
        return "\n".join(log.splitlines()[-lines:])

    def wait_until_reachable(self, driver: str, timeout: float = 15) -> None:
        """Until containerd reaches ``pydock-<driver>`` again. After a serve went away,
        containerd's gRPC client backs off (up to 3 s between attempts) and fails calls
        at once meanwhile, however long the serve has been back. Probed by a Prepare, in
        a namespace of its own: ``ctr snapshots ls`` reads containerd's metadata alone and
        succeeds with no serve at all. containerd's garbage collection removes the probe
        from the serve later."""
        name = self.snapshotters[driver].name
        probe = ("snapshots", "--snapshotter", name)
        deadline = time.monotonic() + timeout
        while self.ctr(*probe, "prepare", "probe", namespace=REACHABLE,
                       check=False).returncode:
            if time.monotonic() > deadline:
                raise AssertionError(f"containerd does not reach {name}:\n{self.log_tail()}")
            time.sleep(0.2)
        self.ctr(*probe, "rm", "probe", namespace=REACHABLE)

    def collect_garbage(self) -> None:
        """A garbage collection, now, waited for: it removes from the snapshotters what
        containerd's metadata no longer names, and calls their Cleanup. On its own containerd
        collects only after enough changes (100 by default), so a test that wants to see a
        snapshot gone from its backend asks for one: a lease deleted with ``--sync``."""
        lease = self.ctr("leases", "create", namespace=REACHABLE).stdout.strip()
        self.ctr("leases", "delete", "--sync", lease, namespace=REACHABLE)

    def remove_everything_running(self) -> None:
        """Kill every task and delete every container, in every namespace: containerd leaves
        a running task's shim alive when it stops, by design."""
        for namespace in self.ctr("namespaces", "ls", "-q").stdout.split():
            for task in self.ctr("tasks", "ls", "-q", namespace=namespace).stdout.split():
                self.ctr("tasks", "rm", "-f", task, namespace=namespace, check=False)
            containers = self.ctr("containers", "ls", "-q", namespace=namespace).stdout.split()
            if containers:
                self.ctr("containers", "rm", *containers, namespace=namespace, check=False)


def backend_snapshots(snapshotter: Snapshotter) -> dict[str, str]:
    """What the serve itself holds, asked over its socket: backend name -> kind (``ACTIVE``,
    ``VIEW``, ``COMMITTED``). ``ctr snapshots ls`` shows containerd's metadata instead,
    which forgets a snapshot before its backend does (at the next garbage collection)."""
    from pydock.core.snapshotter.api import snapshots_pb2

    request = snapshots_pb2.ListSnapshotsRequest(snapshotter=snapshotter.name)
    return {info.name: snapshots_pb2.Kind.Name(info.kind)
            for response in snapshotter.served.stub().List(request, timeout=30)
            for info in response.info}


def config(directory: Path, snapshotters: Mapping[str, Snapshotter]) -> str:
    """containerd's config (version 2): everything of its own under ``directory``, no CRI,
    no debug or metrics listener, and one proxy plugin per snapshotter."""
    proxies = "".join(f'\n[proxy_plugins.{s.name}]\n  type = "snapshot"\n'
                      f'  address = "{s.address}"\n' for s in snapshotters.values())
    return (f'version = 2\nroot = "{directory}/root"\nstate = "{directory}/state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{directory}/containerd.sock"\n'
            f'[ttrpc]\n  address = "{directory}/containerd.sock.ttrpc"\n'
            '[debug]\n  address = ""\n  level = "info"\n[metrics]\n  address = ""\n'
            f'[plugins."io.containerd.internal.v1.opt"]\n  path = "{directory}/opt"\n'
            + proxies)


@contextlib.contextmanager
def private_containerd(roots: Mapping[str, Path]) -> Iterator[Containerd]:
    """containerd with a started ``pydock-<driver>`` snapshotter for each ``driver: root``
    of ``roots``, all stopped, and everything of theirs removed, on leaving."""
    directory = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
    made_shim_state = not SHIM_STATE.exists()
    snapshotters = {driver: Snapshotter(Served(root, directory / f"pydock-{driver}.sock",
                                               driver))
                    for driver, root in roots.items()}
    (directory / "config.toml").write_text(config(directory, snapshotters))
    running = None
    try:
        with open(directory / "containerd.log", "wb") as log:
            running = Containerd(directory, subprocess.Popen(
                [CONTAINERD, "--config", str(directory / "config.toml")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT), snapshotters)
        _wait_for_containerd(running)
        for snapshotter in snapshotters.values():
            snapshotter.start()
        yield running
    finally:
        _stop(directory, running, snapshotters, made_shim_state)


def _wait_for_containerd(running: Containerd) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not _accepts(running.address):
        if running.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"containerd did not start:\n{running.log_tail()}")
        time.sleep(0.02)


def _stop(directory: Path, running: Containerd | None,
          snapshotters: Mapping[str, Snapshotter], made_shim_state: bool) -> None:
    problems: list[str] = []
    if running is not None:
        process = running.process
        if process.poll() is None and _accepts(running.address):
            try:
                running.remove_everything_running()
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                problems.append(f"cannot remove the tasks and containers: {exc}")
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            problems.append(f"containerd ignored SIGTERM for {STOP_TIMEOUT:.0f} s")
    for snapshotter in snapshotters.values():
        try:
            snapshotter.stop()
        except (AssertionError, RuntimeError) as exc:
            problems.append(str(exc))
    shims = _shims_of(directory / "containerd.sock")
    for pid in shims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    if shims:
        problems.append(f"shims still running: {shims}")
    mounts = mounts_under(directory)
    if mounts:
        from pydock.core.syscalls import MNT_DETACH, umount2

        for mount_point in reversed(mounts):
            umount2(mount_point, MNT_DETACH)
        problems.append(f"mounts left under {directory}: {mounts}")
    if made_shim_state:
        _remove_empty_directories(SHIM_STATE)
    # A path still mounted below would be deleted through: keep the directory then.
    if not mounts_under(directory):
        shutil.rmtree(directory, ignore_errors=True)
    if problems:
        raise LeftBehind("; ".join(problems))


def _accepts(address: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(str(address)) == 0


def _shims_of(address: Path) -> list[int]:
    """The shims started by the containerd at ``address`` (they are given it as -address)."""
    wanted = f"\0-address\0{address}\0".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if wanted in b"\0" + Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
    return found


def _remove_empty_directories(top: Path) -> None:
    """rmdir every directory below ``top`` and ``top`` itself, deepest first: those that
    still hold something (another containerd's shim) stay."""
    for directory, _subdirs, _files in os.walk(top, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
