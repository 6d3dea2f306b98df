"""Detached containers, logs, stop and kill, and what the monitor keeps when the CLI dies."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from pydock.testing.cli import PYDOCK, Pydock


def wait_exited(pydock: Pydock, name: str, timeout: float = 10) -> dict[str, object]:
    """The container's state once its exit is recorded: it shows as exited from the moment
    its process is gone, but its exit code (and FinishedAt) only once its monitor has
    recorded them (see test_an_exit_not_yet_recorded_is_shown_as_one_then_with_its_code)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = pydock.inspect(name)["State"]
        if state["Status"] == "exited" and state["FinishedAt"]:
            return state
        time.sleep(0.05)
    raise AssertionError(f"container {name} still running after {timeout}s")


def wait_logged(pydock: Pydock, name: str, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in pydock.ok("logs", name):
        assert time.monotonic() < deadline, f"container {name} never logged {text!r}"
        time.sleep(0.05)


def test_detached_run_prints_the_id_and_returns_while_the_container_runs(
        pydock: Pydock) -> None:
    started = time.monotonic()
    printed = pydock.ok("run", "-d", "--name", "bg", "sleep", "30")
    assert printed == pydock.inspect("bg")["Id"] + "\n"
    assert time.monotonic() - started < 10
    assert pydock.inspect("bg")["State"]["Running"] is True
    ps = pydock.ok("ps")
    assert "bg" in ps and "Up" in ps


def test_detached_run_without_a_name_gets_a_generated_one(pydock: Pydock) -> None:
    container_id = pydock.ok("run", "-d", "true").strip()
    name = pydock.inspect(container_id)["Name"]
    assert re.fullmatch("[a-z]+_[a-z]+", name)
    assert pydock.container_names() == [name]


def test_a_detached_container_does_not_hold_the_callers_output_open(pydock: Pydock) -> None:
    # subprocess.run reads stdout to its end: a monitor or container keeping the CLI's
    # stdout would make this wait for the whole sleep.
    started = time.monotonic()
    pydock.ok("run", "-d", "--name", "quiet", "sleep", "60")
    assert time.monotonic() - started < 10


def test_logs_has_stdout_and_stderr_in_the_order_written(pydock: Pydock) -> None:
    script = "echo out1; sleep 0.1; echo err1 >&2; sleep 0.1; echo out2; echo err2 >&2"
    pydock.ok("run", "-d", "--name", "talk", "sh", "-c", script)
    wait_exited(pydock, "talk")
    both = subprocess.run([PYDOCK, "--root", str(pydock.root), "logs", "talk"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=True, timeout=30)
    assert both.stdout == "out1\nerr1\nout2\nerr2\n"
    split = pydock("logs", "talk")
    assert (split.stdout, split.stderr) == ("out1\nout2\n", "err1\nerr2\n")


def test_logs_follow_prints_until_the_container_ends(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "slow", "sh", "-c", "echo first; sleep 1; echo last")
    follower = pydock.popen("logs", "-f", "slow")
    out, _ = follower.communicate(timeout=30)
    assert (follower.returncode, out) == (0, "first\nlast\n")


def test_logs_are_binary_safe(pydock: Pydock) -> None:
    subprocess.run([PYDOCK, "--root", str(pydock.root), "run", "--name", "raw", "sh", "-c",
                    r"printf '\000\377\n'"], capture_output=True, check=True, timeout=30)
    out = subprocess.run([PYDOCK, "--root", str(pydock.root), "logs", "raw"],
                         capture_output=True, check=True, timeout=30).stdout
    assert out == b"\x00\xff\n"


def test_foreground_output_is_shown_and_kept_in_the_log(pydock: Pydock) -> None:
    result = pydock("run", "--name", "fg", "sh", "-c", "echo shown; echo warned >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "shown\n", "warned\n")
    assert pydock.ok("logs", "fg") == "shown\n"


def test_a_killed_cli_loses_neither_output_nor_exit_code(pydock: Pydock) -> None:
    cli = pydock.popen("run", "--name", "orphan", "sh", "-c",
                       "echo before; sleep 1.5; echo after; exit 3")
    pydock.wait_running("orphan")
    cli.kill()
    cli.communicate(timeout=30)
    state = wait_exited(pydock, "orphan")
    assert state["ExitCode"] == 3
    assert pydock.ok("logs", "orphan") == "before\nafter\n"


def test_signals_sent_to_the_cli_reach_the_container(pydock: Pydock) -> None:
    cli = pydock.popen("run", "--name", "trap", "sh", "-c",
                       "trap 'echo got TERM; exit 42' TERM; echo ready; "
                       "while :; do sleep 0.1; done")
    assert cli.stdout is not None
    assert cli.stdout.readline() == "ready\n"
    cli.send_signal(signal.SIGTERM)
    out, _ = cli.communicate(timeout=30)
    assert (cli.returncode, out) == (42, "got TERM\n")


def test_stop_sends_term_then_kill_after_the_grace_period(pydock: Pydock) -> None:
    # PID 1 without a handler ignores SIGTERM: only the SIGKILL after -t ends it.
    pydock.ok("run", "-d", "--name", "stubborn", "sleep", "60")
    started = time.monotonic()
    assert pydock.ok("stop", "-t", "1", "stubborn") == "stubborn\n"
    assert 1 <= time.monotonic() - started < 10
    state = pydock.inspect("stubborn")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)


def test_stop_of_a_container_that_handles_term(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "polite", "sh", "-c",
              "trap 'exit 7' TERM; while :; do sleep 0.1; done")
    started = time.monotonic()
    pydock.ok("stop", "polite")
    assert time.monotonic() - started < 5
    assert pydock.inspect("polite")["State"]["ExitCode"] == 7
    assert pydock.ok("stop", "polite") == "polite\n"  # stopped already: nothing to do


def test_stop_of_an_rm_container_removes_it(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--rm", "--name", "gone", "sleep", "60")
    pydock.ok("stop", "-t", "0", "gone")
    assert pydock.container_names() == []


@pytest.mark.parametrize("spelling", ["USR1", "SIGUSR1", "usr1", "10"])
def test_kill_sends_the_named_signal(pydock: Pydock, spelling: str) -> None:
    pydock.ok("run", "-d", "--name", "k", "sh", "-c",
              "trap 'exit 10' USR1; echo ready; while :; do sleep 0.1; done")
    # run -d returns once sh is exec'd, which may be before it has set its trap: a USR1
    # sent then would end it with the default action (138), not the trap's 10.
    wait_logged(pydock, "k", "ready\n")
    pydock.ok("kill", "-s", spelling, "k")
    assert wait_exited(pydock, "k")["ExitCode"] == 10


def test_kill_defaults_to_sigkill(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "k", "sleep", "60")
    pydock.ok("kill", "k")
    assert wait_exited(pydock, "k")["ExitCode"] == 137


@pytest.mark.parametrize(("args", "error"), [
    (("kill", "-s", "NOPE", "x"), "invalid signal 'NOPE'"),
    (("kill", "-s", "0", "x"), "invalid signal '0'"),
    (("kill", "-s", "999", "x"), "invalid signal '999'"),
    (("kill", "x"), "container x is not running"),
    (("kill", "nosuch"), "no such container: nosuch"),
    (("stop", "nosuch"), "no such container: nosuch"),
    (("logs", "nosuch"), "no such container: nosuch"),
    (("stop", "-t", "-1", "x"), "-1 is not in the range x>=0"),
])
def test_bad_lifecycle_requests_fail_with_one_line(pydock: Pydock, args: tuple[str, ...],
                                                    error: str) -> None:
    pydock.ok("run", "--name", "x", "true")
    pydock.refused(*args, match=error)


def test_a_detached_command_that_cannot_start_reports_why(pydock: Pydock) -> None:
    result = pydock("run", "-d", "--name", "broken", "no-such-command")
    assert result.returncode == 127
    assert 'executable file not found' in result.stderr
    assert pydock.inspect("broken")["State"]["ExitCode"] == 127


def test_a_reused_pid_is_never_mistaken_for_the_container(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "r", "sleep", "60")
    record = pydock.root / "containers" / "r" / "state.json"
    data = json.loads(record.read_text())
    pydock.ok("kill", "r")
    wait_exited(pydock, "r")
    # A record claiming "running" with the pid of a live process that is not the container
    # (this test's own), as a crash could leave it: not running, and never signalled.
    data.update(status="running", pid=os.getpid())
    record.write_text(json.dumps(data))
    assert pydock.inspect("r")["State"]["Running"] is False
    pydock.refused("kill", "r")
    assert pydock("stop", "r").returncode == 0


def test_an_exit_not_yet_recorded_is_shown_as_one_then_with_its_code(pydock: Pydock) -> None:
    """Between the container's exit and its monitor recording the code, the record still
    says running: ps and inspect must not (its pid is dead), nor wait for the monitor,
    which may be busy for long (a slow reader of the output, an --rm removal)."""
    from pydock.core.processes import process_start_time

    pydock.ok("run", "-d", "--name", "ending", "sh", "-c", "sleep 0.5; exit 3")
    record = json.loads((pydock.root / "containers" / "ending" / "state.json").read_text())
    monitor, pid = record["monitor_pid"], record["pid"]
    os.kill(monitor, signal.SIGSTOP)  # it cannot reap, let alone record, until continued
    try:
        deadline = time.monotonic() + 10
        while process_start_time(pid) != 0:  # a zombie counts as gone
            assert time.monotonic() < deadline, "the container did not end"
            time.sleep(0.02)
        started = time.monotonic()
        row = json.loads(pydock.ok("ps", "-a", "--format", "json"))[0]
        state = pydock.inspect("ending")["State"]
        assert time.monotonic() - started < 5, "a reader waited for the stopped monitor"
        assert (row["State"], row["Status"]) == ("exited", "Exited (unknown)")
        assert (state["Running"], state["Pid"]) == (False, 0)
        assert json.loads(pydock.ok("ps", "--format", "json")) == []
    finally:
        os.kill(monitor, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while process_start_time(monitor) == record["monitor_start"]:  # it records, then ends
        assert time.monotonic() < deadline, "the monitor did not end"
        time.sleep(0.02)
    assert json.loads(pydock.ok("ps", "-a", "--format", "json"))[0]["Status"].startswith(
        "Exited (3)")
    assert pydock.inspect("ending")["State"]["ExitCode"] == 3
