"""Resource limits end to end: ``run -m``, ``--cpus`` and ``--pids-limit`` on the host's cgroups.

Each test runs real containers and looks at what the kernel did to them (an OOM kill,
failed forks, a throttled loop) and at the cgroup pydock made for them. The conftest
fails any test after which a container's cgroup survives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import storage_entries

from pydock.core.runtime.cgroups import cgroup_name
from pydock.testing.cli import (
    PYDOCK,
    TIMEOUT,
    Pydock,
    cgroup_hierarchies,
    cgroup_mounts,
    container_cgroups,
)

HIERARCHIES = cgroup_hierarchies()


def requires(*controllers: str) -> pytest.MarkDecorator:
    missing = [c for c in controllers if c not in HIERARCHIES]
    return pytest.mark.skipif(bool(missing), reason=f"this host has no {' or '.join(missing)} "
                              "cgroup controller (neither cgroup v1 nor v2)")


def cgroup_of(pydock: Pydock, container_id: str, controller: str) -> Path:
    """Where pydock puts the container's cgroup for ``controller``."""
    return HIERARCHIES[controller] / "pydock" / cgroup_name(pydock.root, container_id)


def cgroups_of_process(pid: int) -> set[str]:
    """The cgroup paths (relative to their hierarchies) /proc/PID/cgroup lists."""
    return {line.split(":", 2)[2] for line in Path(f"/proc/{pid}/cgroup").read_text().split()}


def read(path: Path) -> str:
    return path.read_text().strip()


Start = Callable[..., "subprocess.Popen[str]"]


@pytest.fixture
def start_run(pydock: Pydock) -> Iterator[Start]:
    """Starts ``pydock run ARGS...`` with a pipe to the container's stdin, so that a test
    decides when the container ends; killed at the end of the test if still there."""
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([PYDOCK, "--root", str(pydock.root), "run", "-i", *args],
                                text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=pydock.env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- the kernel enforces the limits -----------------------------------------------------


@requires("memory")
def test_a_memory_hog_is_oom_killed_at_the_limit(pydock: Pydock) -> None:
    # tail keeps everything after the last newline: /dev/zero has none.
    result = pydock("run", "--name", "hog", "-m", "32m", "sh", "-c",
                    "head -c 200m /dev/zero | tail")
    assert result.returncode == 137, result.stderr
    state = pydock.inspect("hog")["State"]
    assert state["OOMKilled"] is True
    assert state["ExitCode"] == 137


@requires("memory")
def test_memory_within_the_limit_is_no_oom_kill(pydock: Pydock) -> None:
    out = pydock.ok("run", "--name", "modest", "-m", "32m", "sh", "-c",
                    "head -c 4m /dev/zero | tail | wc -c")
    assert out.strip() == str(4 * 1024 * 1024)
    assert pydock.inspect("modest")["State"]["OOMKilled"] is False


@requires("pids")
def test_a_fork_loop_is_held_at_the_pids_limit(pydock: Pydock) -> None:
    # PID 1 starts a shell that forks sleeps until fork fails: that shell dies of it, PID 1
    # carries on. 10 tasks: PID 1, the forking shell and 8 sleeps; 9 once the shell is gone.
    script = """
        sh -c 'i=0; while [ $i -lt 20 ]; do sleep 60 & i=$((i+1)); done'
        echo "forker exited $?"
        set -- /proc/[0-9]*
        echo "processes $#"
    """
    result = pydock("run", "--rm", "--pids-limit", "10", "sh", "-c", script)
    assert result.returncode == 0, result.stderr
    assert "fork" in result.stderr.lower()  # busybox: "sh: can't fork: Resource ..."
    lines = result.stdout.splitlines()
    assert lines[0] != "forker exited 0"
    assert lines[1] == "processes 9"


@requires("cpu")
def test_a_cpu_bound_loop_is_slowed_by_cpus(pydock: Pydock) -> None:
    # Both count as fast as they can for the same 3 s, side by side so that whatever else
    # the machine does weighs on both. The limit, 0.1 CPU, is far below what the unlimited
    # loop gets even on a busy machine: with the kernel's autogroup scheduling each session
    # (each concurrent test run) gets an equal share, and four or five of them on two CPUs
    # leave a loop about 0.4 CPU, too close to a limit of 0.25 for a margin that holds.
    count = ("sh -c 'i=0; trap \"echo \\$i; exit\" TERM; while :; do i=$((i+1)); done' & "
             "sleep 3; kill $!; wait")
    unlimited = pydock.popen("run", "--rm", "sh", "-c", count)
    limited = pydock.popen("run", "--rm", "--cpus", "0.1", "sh", "-c", count)
    free_count, free_err = unlimited.communicate(timeout=TIMEOUT)
    slow_count, slow_err = limited.communicate(timeout=TIMEOUT)
    assert unlimited.returncode == 0 and limited.returncode == 0, free_err + slow_err
    assert int(slow_count) < 0.6 * int(free_count), (slow_count, free_count)


# -- the cgroup: made for every container, gone with the container ---------------------


@requires("memory", "cpu", "pids")
def test_the_cgroup_holds_the_limits_while_the_container_runs_and_goes_when_it_exits(
        pydock: Pydock, start_run: Start) -> None:
    proc = start_run("--name", "limited", "-m", "64m", "--cpus", "0.5", "--pids-limit", "50",
                     "sh", "-c", "echo ready; read line")
    assert proc.stdout.readline() == "ready\n"
    info = pydock.inspect("limited")
    container_id, pid = info["Id"], info["State"]["Pid"]
    assert f"/pydock/{cgroup_name(pydock.root, container_id)}" in cgroups_of_process(pid)
    memory, cpu, pids = (cgroup_of(pydock, container_id, c) for c in ("memory", "cpu", "pids"))
    if (memory / "memory.limit_in_bytes").exists():  # cgroup v1
        assert read(memory / "memory.limit_in_bytes") == str(64 * 1024 * 1024)
        if (memory / "memory.memsw.limit_in_bytes").exists():
            assert read(memory / "memory.memsw.limit_in_bytes") == str(64 * 1024 * 1024)
        assert read(cpu / "cpu.cfs_quota_us") == "50000"
        assert read(cpu / "cpu.cfs_period_us") == "100000"
    else:
        assert read(memory / "memory.max") == str(64 * 1024 * 1024)
        assert read(cpu / "cpu.max") == "50000 100000"
    assert read(pids / "pids.max") == "50"

    proc.communicate("go\n", timeout=TIMEOUT)
    assert proc.returncode == 0
    for cgroup in (memory, cpu, pids):
        assert not cgroup.exists()
    host = pydock.inspect("limited")["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (64 << 20, 5 * 10**8, 50)


def test_without_limits_the_container_still_has_a_cgroup_of_its_own(
        pydock: Pydock, start_run: Start) -> None:
    # Its cgroup is the root of its cgroup namespace (test_cgroup_namespace.py).
    proc = start_run("--name", "free", "sh", "-c", "echo ready; read line")
    assert proc.stdout.readline() == "ready\n"
    info = pydock.inspect("free")
    own = f"/pydock/{cgroup_name(pydock.root, info['Id'])}"
    assert cgroups_of_process(info["State"]["Pid"]) == {own}
    assert len(container_cgroups(pydock.root)) == len(cgroup_mounts())
    proc.communicate("go\n", timeout=TIMEOUT)
    assert proc.returncode == 0
    assert container_cgroups(pydock.root) == []
    host = pydock.inspect("free")["HostConfig"]
    assert (host["Memory"], host["NanoCpus"], host["PidsLimit"]) == (0, 0, None)
    assert pydock.inspect("free")["State"]["OOMKilled"] is False


@requires("memory")
def test_rm_f_of_a_running_container_removes_its_cgroup(pydock: Pydock) -> None:
    proc = pydock.popen("run", "--name", "doomed", "-m", "32m", "sleep", "60")
    try:
        container_id = pydock.wait_running("doomed")["Id"]
        assert cgroup_of(pydock, container_id, "memory").is_dir()
        pydock.ok("rm", "-f", "doomed")
        assert not cgroup_of(pydock, container_id, "memory").exists()
        assert proc.wait(timeout=TIMEOUT) == 137
    finally:
        proc.kill()
        proc.communicate()


@requires("pids")
def test_prune_removes_the_cgroup_a_crashed_monitor_left(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "orphan", "--pids-limit", "5", "sleep", "60")
    info = pydock.inspect("orphan")
    record = json.loads((pydock.root / "containers" / "orphan" / "state.json").read_text())
    os.kill(record["monitor_pid"], signal.SIGKILL)  # dies without cleaning up
    cgroup = cgroup_of(pydock, info["Id"], "pids")
    assert cgroup.is_dir()
    os.kill(info["State"]["Pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pydock.inspect("orphan")["State"]["Running"]:
        assert time.monotonic() < deadline, "the container did not die"
        time.sleep(0.05)
    assert cgroup.is_dir()
    assert pydock.ok("prune") == "orphan\n"
    assert not cgroup.exists()


@requires("pids")
def test_exec_joins_the_containers_cgroup(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "held", "--pids-limit", "20", "sleep", "60")
    cgroup = cgroup_of(pydock, pydock.inspect("held")["Id"], "pids")
    # Behind the container's cgroup namespace, the exec'd process sees its cgroup as the
    # root, as the container's own processes do: the host tells where it really is.
    assert "pids:/\n" in pydock.ok("exec", "held", "cat", "/proc/self/cgroup")
    execd = pydock.popen("exec", "held", "sleep", "60")
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(read(cgroup / "cgroup.procs").split()) < 2:
            assert execd.poll() is None and time.monotonic() < deadline, execd.communicate()
            time.sleep(0.02)
    finally:
        pydock.ok("rm", "-f", "held")
        execd.communicate(timeout=TIMEOUT)


# -- the flags ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "size"), [
    ("6m", 6 << 20),  # docker's minimum
    ("64M", 64 << 20),
    ("65536k", 64 << 20),
    ("64mb", 64 << 20),
    ("1.5g", 3 << 29),
    (str(100 << 20), 100 << 20),  # a bare number is bytes
    ("0", 0),  # no limit, as in docker
])
@requires("memory")
def test_memory_sizes_take_dockers_units(pydock: Pydock, value: str, size: int) -> None:
    pydock.ok("run", "--name", "sized", "-m", value, "true")
    assert pydock.inspect("sized")["HostConfig"]["Memory"] == size


@pytest.mark.parametrize("value", ["0", "-1", "-1000"])
def test_a_pids_limit_of_zero_or_less_is_no_limit(pydock: Pydock, value: str) -> None:
    out = pydock.ok("run", "--name", "unlimited", "--pids-limit", value, "sh", "-c",
                    "cat /proc/self/cgroup")
    assert "/pydock/" not in out
    assert pydock.inspect("unlimited")["HostConfig"]["PidsLimit"] is None


CPUS = len(os.sched_getaffinity(0))
CPU_RANGE = f"range of CPUs is from 0.01 to {CPUS}.00, as there are only {CPUS} CPUs available"


@pytest.mark.parametrize(("args", "message"), [
    (["-m", "5m"], "Minimum memory limit allowed is 6MB"),
    (["-m", "6291455"], "Minimum memory limit allowed is 6MB"),
    (["-m", "abc"], "invalid memory size 'abc'"),
    (["-m", "-1"], "invalid memory size '-1'"),
    (["-m", "1.5.5g"], "invalid memory size '1.5.5g'"),
    (["-m", "10x"], "invalid memory size '10x'"),
    (["-m", ""], "invalid memory size ''"),
    (["-m", "99999999p"], "too large"),
    (["--cpus", "0"], CPU_RANGE),
    (["--cpus", "0.001"], CPU_RANGE),
    (["--cpus", "1000"], CPU_RANGE),
    (["--cpus", f"{CPUS}.01"], CPU_RANGE),
    (["--cpus", "x"], "invalid number of CPUs 'x'"),
    (["--cpus", "-1"], "invalid number of CPUs '-1'"),
    (["--cpus", "."], "invalid number of CPUs '.'"),
    (["--cpus", "0.0000000001"], "at most 9 decimal places"),
    (["--pids-limit", "abc"], "invalid --pids-limit 'abc'"),
    (["--pids-limit", "1.5"], "invalid --pids-limit '1.5'"),
    (["--pids-limit", "99999999"], "more than the kernel allows"),
])
def test_bad_limits_are_one_line_125_and_create_nothing(pydock: Pydock, args: list[str],
                                                        message: str) -> None:
    pydock.refused("run", "--name", "never", *args, "true", match=message)
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []
