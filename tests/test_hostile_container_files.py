"""Files an image or a container's root plants where pydock reads: a FIFO at /etc/passwd
or /etc/group, read to resolve the container's user on every ``run`` and ``exec``.

A FIFO there once hung ``run`` and ``exec`` for good, deaf to SIGTERM and SIGINT, with the
record's lock held: ``rm -f`` waited on it, and ``stop`` returned 0 having done nothing.
Now it is refused in one line; and a container whose setup hangs all the same (the
``setup.user-lookup`` failpoint hangs there) still gives way to ``stop``,
``kill``, ``rm -f`` and a signal sent to the CLI. (A running container with a stuck ``exec``
gave way to them already: the exec holds no lock, and its child dies with the container.)
Every command here has a hard timeout: a regression hangs, and must fail instead.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import busybox_rootfs

from pydock.testing.cli import Pydock
from pydock.testing.tar import Member, node, reg, tree, write_tar

PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"
# What "within seconds" means here; a hang runs into it and fails.
SECONDS = 20
FIFO_TYPE = b"6"


def image(pydock: Pydock, tmp_path: Path, name: str, fifo: str | None = None) -> str:
    """A busybox image with /etc/passwd and /etc/group; ``fifo`` (one of them) a FIFO."""
    files = {"etc/passwd": PASSWD, "etc/group": GROUP}
    members: list[Member] = tree(busybox_rootfs(tmp_path / f"{name}.d"))
    members += [node(path, FIFO_TYPE, 0o644) if path == fifo else reg(path, data)
                for path, data in files.items()]
    pydock.ok("image", "import", str(write_tar(tmp_path / f"{name}.tar", members)), name)
    return name


def fifo_by_container_root(pydock: Pydock, tmp_path: Path) -> None:
    """Container ``c``, whose root has made its /etc/passwd a FIFO."""
    name = image(pydock, tmp_path, "plain")
    pydock("run", "-d", "--name", "c", "--image", name, "sh", "-c", "busybox rm /etc/passwd && "
           "busybox mkfifo /etc/passwd && echo ready && exec busybox sleep 1000", timeout=SECONDS)
    wait_for(lambda: pydock("logs", "c", timeout=SECONDS).stdout == "ready\n", "FIFO")


def refused_within(pydock: Pydock, args: list[str], match: str) -> None:
    """One line, exit 125 (as :meth:`Pydock.refused` insists), within :data:`SECONDS`."""
    result = pydock(*args, timeout=SECONDS)
    shown = f"exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    assert result.returncode == 125, shown
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("pydock: "), shown
    assert match in result.stderr, shown


def record(pydock: Pydock, name: str) -> dict[str, int]:
    state = json.loads((pydock.root / "containers" / name / "state.json").read_text())
    return {"pid": state["pid"], "monitor_pid": state["monitor_pid"]}


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + SECONDS
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {SECONDS}s")


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] not in b"ZX"


def in_namespace_of(pid: int) -> int:
    """How many processes share the PID namespace of ``pid``."""
    namespace = Path(f"/proc/{pid}/ns/pid").readlink()
    count = 0
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):  # gone meanwhile
            count += entry.name.isdigit() and alive(int(entry.name)) and \
                (entry / "ns" / "pid").readlink() == namespace
    return count


@pytest.fixture
def stopping() -> Iterator[list[subprocess.Popen[str]]]:
    """CLIs started in the background, killed at the end should a test leave one behind."""
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("path", ["etc/passwd", "etc/group"])
def test_run_refuses_a_fifo_in_the_image(pydock: Pydock, tmp_path: Path, path: str) -> None:
    name = image(pydock, tmp_path, "fifo", fifo=path)
    refused_within(pydock, ["run", "--rm", "--image", name, "true"],
                   f"container setup failed: /{path} is not a regular file")
    refused_within(pydock, ["run", "-d", "--name", "c", "--image", name, "true"],
                   "not a regular file")
    assert pydock("rm", "-f", "c", timeout=SECONDS).returncode == 0


def test_exec_refuses_a_fifo_made_by_container_root(pydock: Pydock, tmp_path: Path) -> None:
    fifo_by_container_root(pydock, tmp_path)
    refused_within(pydock, ["exec", "-u", "nobody", "c", "true"],
                   "/etc/passwd is not a regular file")
    assert pydock("rm", "-f", "c", timeout=SECONDS).returncode == 0


def stuck_run(pydock: Pydock, tmp_path: Path, stopping: list[subprocess.Popen[str]],
              options: tuple[str, ...] = ()) -> tuple[subprocess.Popen[str], dict[str, int]]:
    """A ``run`` whose container's setup hangs, with the record's lock held by its monitor:
    on a FIFO at /etc/passwd where that is not refused, at a failpoint where it is."""
    name = image(pydock, tmp_path, "fifo", fifo="etc/passwd")
    hanging = Pydock(pydock.root, {**pydock.env, "PYDOCK_FAILPOINT": "setup.user-lookup:hang"})
    run = hanging.popen("run", "--name", "c", *options, "--image", name, "true")
    stopping.append(run)
    wait_for(lambda: (pydock.root / "containers" / "c" / "state.json").exists()
             and record(pydock, "c")["pid"] > 0, "container process on record")
    time.sleep(0.5)  # into the hang
    assert run.poll() is None, run.communicate()
    return run, record(pydock, "c")


# With a restart policy too: marking it stopped takes no lock, since its monitor holds the
# lock while the setup hangs, and it is not restarted afterwards.
@pytest.mark.parametrize("restart", [(), ("--restart", "always")], ids=["no", "always"])
@pytest.mark.parametrize("command", [["stop", "-t", "1", "c"], ["kill", "c"], ["rm", "-f", "c"]])
def test_a_stuck_run_gives_way_for_good(pydock: Pydock, tmp_path: Path,
                                        stopping: list[subprocess.Popen[str]],
                                        command: list[str], restart: tuple[str, ...]) -> None:
    run, pids = stuck_run(pydock, tmp_path, stopping, restart)
    result = pydock(*command, timeout=SECONDS)
    assert result.returncode == 0, result.stderr
    run.wait(timeout=SECONDS)
    assert not alive(pids["pid"]) and not alive(pids["monitor_pid"])
    if command[0] == "rm":
        assert "c" not in pydock.container_names()
        return
    info = pydock.inspect("c")
    assert (info["State"]["Status"], info["RestartCount"]) == ("exited", 0)
    assert pydock("rm", "c", timeout=SECONDS).returncode == 0


def test_a_stuck_run_ends_on_sigterm(pydock: Pydock, tmp_path: Path,
                                     stopping: list[subprocess.Popen[str]]) -> None:
    run, pids = stuck_run(pydock, tmp_path, stopping)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=SECONDS)
    wait_for(lambda: not alive(pids["monitor_pid"]), "monitor exit")
    assert not alive(pids["pid"])
    assert pydock("rm", "c", timeout=SECONDS).returncode == 0


def stuck_exec(pydock: Pydock, tmp_path: Path, stopping: list[subprocess.Popen[str]]
               ) -> subprocess.Popen[str]:
    """An ``exec -u nobody`` whose setup hangs: on the FIFO container root made at
    /etc/passwd where that is not refused, at a failpoint where it is."""
    fifo_by_container_root(pydock, tmp_path)
    hanging = Pydock(pydock.root, {**pydock.env, "PYDOCK_FAILPOINT": "setup.user-lookup:hang"})
    exec_ = hanging.popen("exec", "-u", "nobody", "c", "true")
    stopping.append(exec_)
    time.sleep(1)  # into the hang
    assert exec_.poll() is None, exec_.communicate()
    return exec_


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stuck_exec_ends_on_a_signal(pydock: Pydock, tmp_path: Path,
                                       stopping: list[subprocess.Popen[str]],
                                       signum: signal.Signals) -> None:
    exec_ = stuck_exec(pydock, tmp_path, stopping)
    exec_.send_signal(signum)
    assert exec_.wait(timeout=SECONDS) == 128 + signum
    # Its child has gone with it: the container's first process is alone in it.
    wait_for(lambda: in_namespace_of(pydock.inspect("c")["State"]["Pid"]) == 1, "lone process")
    assert pydock("rm", "-f", "c", timeout=SECONDS).returncode == 0

