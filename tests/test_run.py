"""``pydock run`` end to end: command, environment, exit codes, stdio, --rm, --read-only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from helpers import DRIVERS

from pydock.testing.cli import PYDOCK, Pydock


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_design_cards_command_runs_on_every_driver(pydock: Pydock, driver: str) -> None:
    out = pydock.ok("run", "--storage", driver, "-name", "hello1", "/bin/sh", "-c",
                    "mkdir /test; ls /")
    assert "test" in out.split()
    info = pydock.inspect("hello1")
    assert info["GraphDriver"]["Name"] == driver
    assert info["State"]["Status"] == "exited"
    assert info["State"]["ExitCode"] == 0


def test_default_command_of_the_image_is_a_shell_reading_stdin(pydock: Pydock) -> None:
    assert pydock.ok("run", "--rm", "-i", input="echo from-stdin; exit 0\n") == "from-stdin\n"


@pytest.mark.quick
def test_stdin_stdout_and_stderr_are_connected(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "-i", "sh", "-c", "cat; echo err >&2", input="through\n")
    assert (result.returncode, result.stdout, result.stderr) == (0, "through\n", "err\n")


@pytest.mark.quick
def test_arguments_after_the_command_are_passed_untouched(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "echo", "--name", "-e", "x=y", "--rm", "--help")
    assert out == "--name -e x=y --rm --help\n"


@pytest.mark.quick
def test_exit_status_of_the_container_is_pydocks(pydock: Pydock) -> None:
    assert pydock("run", "--rm", "sh", "-c", "exit 3").returncode == 3


@pytest.mark.quick
def test_command_not_found_exits_127_with_one_line(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "no-such-command")
    assert result.returncode == 127
    assert result.stderr.count("\n") == 1
    assert "no-such-command" in result.stderr and "not found" in result.stderr


def test_command_not_executable_exits_126(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "/etc/passwd")
    assert result.returncode == 126
    assert "Traceback" not in result.stderr


def test_death_by_signal_exits_128_plus_n(pydock: Pydock) -> None:
    proc = pydock.popen("run", "--name", "victim", "sleep", "60")
    try:
        pid = pydock.wait_running("victim")["State"]["Pid"]
        os.kill(pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 128 + signal.SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    assert pydock.inspect("victim")["State"]["ExitCode"] == 137


def test_sigterm_to_the_cli_is_forwarded_to_the_container(pydock: Pydock) -> None:
    script = "trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done"
    proc = pydock.popen("run", "--rm", "--name", "trapper", "sh", "-c", script)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 42
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.quick
def test_environment_is_the_images_plus_defaults_plus_e_never_the_hosts(pydock: Pydock) -> None:
    out = pydock("run", "--rm", "-name", "envy", "-e", "FOO=bar", "-e", "EMPTY=",
                 "--env", "HOME=/elsewhere", "env",
                 env={"HOST_SECRET": "leak", "FOO": "host-foo"})
    assert out.returncode == 0, out.stderr
    env = dict(line.split("=", 1) for line in out.stdout.splitlines())
    assert env == {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOSTNAME": "envy", "HOME": "/elsewhere", "TERM": "xterm",
                   "FOO": "bar", "EMPTY": ""}


def test_e_with_a_bare_key_copies_the_hosts_value_like_docker(pydock: Pydock) -> None:
    out = pydock("run", "--rm", "-e", "PASSED", "-e", "UNSET_ON_HOST", "env",
                 env={"PASSED": "yes"})
    assert "PASSED=yes\n" in out.stdout
    assert "UNSET_ON_HOST" not in out.stdout


def test_workdir_is_entered_and_created_when_missing(pydock: Pydock) -> None:
    assert pydock.ok("run", "--rm", "-w", "/tmp", "pwd") == "/tmp\n"
    assert pydock.ok("run", "--rm", "-w", "/new/dir", "pwd") == "/new/dir\n"


@pytest.mark.quick
def test_rm_removes_record_and_storage_after_exit(pydock: Pydock) -> None:
    pydock.ok("run", "--rm", "--name", "gone", "--storage", "copy", "true")
    assert pydock.container_names() == []
    assert not any((pydock.root / "storage" / "copy").iterdir())


def test_rm_also_cleans_up_after_a_failing_command(pydock: Pydock) -> None:
    assert pydock("run", "--rm", "--name", "gone", "no-such-command").returncode == 127
    assert pydock.container_names() == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_read_only_root_refuses_writes_on_every_driver(pydock: Pydock, driver: str) -> None:
    result = pydock("run", "--rm", "--read-only", "--storage", driver, "touch", "/x")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr
    # /dev/shm and the other kernel filesystems stay usable.
    pydock.ok("run", "--rm", "--read-only", "--storage", driver, "touch", "/dev/shm/x")


def test_sigpipe_is_not_ignored_in_the_container(pydock: Pydock) -> None:
    # Python ignores SIGPIPE and ignored signals survive exec: `yes | head` would hang.
    out = pydock.ok("run", "--rm", "sh", "-c", "yes | head -n 2")
    assert out == "y\ny\n"


def test_only_stdio_file_descriptors_reach_the_container(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "ls", "/proc/self/fd")
    assert sorted(out.split()) == ["0", "1", "2", "3"]  # 3 is ls's own directory handle


def test_closed_stdin_and_stdout_do_not_take_stderr_away(pydock: Pydock) -> None:
    result = subprocess.run(f"{PYDOCK} --root {pydock.root} run --rm sh -c 'echo to-stderr >&2'"
                            " <&- >&-", shell=True, capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "to-stderr\n")


def test_an_empty_command_name_is_not_found(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "")
    assert result.returncode == 127
    assert result.stderr == 'pydock: exec: "": executable file not found in $PATH\n'


def test_the_runtime_can_fork_again_after_its_container_exits(pydock: Pydock) -> None:
    # The CLI enters a new PID namespace only for the fork; a driver's remove() or any
    # later subprocess must still work once the container's PID 1 is gone.
    script = ("import subprocess, sys; from pathlib import Path;"
              "from pydock.core.containers.lifecycle import Containers;"
              "from pydock.core.containers.spec import RunOptions;"
              "_, code, _ = Containers(Path(sys.argv[1])).run(RunOptions(command=('true',),"
              " remove=True));"
              "print(code, subprocess.run(['echo', 'forked'], capture_output=True,"
              " text=True).stdout.strip())")
    out = subprocess.run([sys.executable, "-c", script, str(pydock.root)], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout == "0 forked\n", out.stderr
