"""What a container gets from whoever started it: no terminal, no fds, no keyring, no cwd
outside its root, and exec lands in its root wherever pydock runs.

Each test is an attack from inside the container on the caller of ``run`` or ``exec``
(root on the host), as docker's and runc's runtime facts defend against them.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

from helpers import tag_with_config
from probes import build_probe, import_probe_image

from pydock.testing.cli import PYDOCK, Pydock


def cli(pydock: Pydock, *args: str) -> list[str]:
    return [PYDOCK, "--root", str(pydock.root), *args]


def on_terminal(script: str, env: dict[str, str], *, typed_later: bytes,
                after: float) -> tuple[int, bytes]:
    """``sh -c script`` on a fresh pseudo-terminal, as its controlling terminal: the
    admin's terminal. ``typed_later`` is typed into it ``after`` seconds; returns the exit
    code and all it showed."""
    pid, master = pty.fork()
    if pid == 0:
        os.execve("/bin/sh", ["sh", "-c", script], env)
    shown, typed = b"", False
    start = time.monotonic()
    try:
        while True:
            if not typed and time.monotonic() - start >= after:
                os.write(master, typed_later)
                typed = True
            if select.select([master], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):  # EIO: the shell has exited
                    shown += os.read(master, 4096)
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), shown
            assert time.monotonic() - start < 60, f"the shell did not exit: {shown!r}"
    finally:
        os.close(master)


# -- the caller's terminal ---------------------------------------------------

def test_exec_cannot_type_into_the_callers_terminal(pydock: Pydock, tmp_path: Path) -> None:
    """TIOCSTI through fds 0-2 and through /dev/tty, by exec's command and by a process it
    leaves in the background, must not reach the shell that ran ``pydock exec``: the
    "touch" it types there would run as host root."""
    image = import_probe_image(pydock, tmp_path, ["tiocsti"])
    pydock.ok("run", "-d", "--name", "box", "--image", image, "/bin/busybox", "sleep", "1000")
    now, later = tmp_path / "typed-now", tmp_path / "typed-later"
    exec_ = " ".join(cli(pydock, "exec", "box", "/probes/tiocsti"))
    # After exec returns, the admin's shell reads the terminal: what was typed into it.
    script = f"{exec_} {now}; {exec_} {later} 1; exec sh"
    code, shown = on_terminal(script, pydock.env, typed_later=b"exit\n", after=3)
    assert code == 0, shown
    assert not now.exists() and not later.exists(), shown
    # Without -t the command has no controlling terminal: /dev/tty is ENXIO, as in docker.
    assert b"/dev/tty: No such device or address" in shown, shown
    assert b": ok" not in shown, shown


def test_a_terminal_is_relayed_only_with_i(pydock: Pydock) -> None:
    """Without -i, what is typed at the admin's terminal is for the admin's shell: the
    container reads EOF (as docker gives it no stdin), and nothing typed is taken from the
    shell, even by a ``pydock run`` left running in the background."""
    pydock.ok("run", "-d", "--name", "box", "sleep", "1000")
    run = " ".join(cli(pydock, "run", "--rm", "sh", "-c", "'cat; echo run-eof'"))
    exec_ = " ".join(cli(pydock, "exec", "box", "sh", "-c", "'cat; echo exec-eof'"))
    background = " ".join(cli(pydock, "run", "--rm", "sleep", "5"))
    script = f'{run}; {exec_}; {background} & read line; echo "shell read $line"; wait'
    code, shown = on_terminal(script, pydock.env, typed_later=b"hello\n", after=2)
    assert code == 0, shown
    assert b"run-eof" in shown and b"exec-eof" in shown, shown
    assert b"shell read hello" in shown, shown


# -- the caller's fds ----------------------------------------------------------

def test_run_cannot_write_the_file_given_as_stdin(pydock: Pydock, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"s" * 200_000)  # more than a pipe holds: the relay must keep up
    secret.chmod(0o600)
    with secret.open("rb") as stdin:
        result = subprocess.run(
            cli(pydock, "run", "--rm", "-i", "sh", "-c", "wc -c; echo X > /proc/self/fd/0"),
            stdin=stdin, capture_output=True, text=True, env=pydock.env, timeout=60)
    assert result.returncode == 0, result.stderr
    # Read as a stream, as it was given, to its end: never reopened as the file.
    assert result.stdout.split() == ["200000"]
    assert secret.read_bytes() == b"s" * 200_000


def test_detached_stdin_is_an_empty_pipe(pydock: Pydock) -> None:
    """Not the host's /dev/null, which container root could reopen and chmod."""
    pydock.ok("run", "-d", "--name", "bg", "sh", "-c",
              "readlink /proc/self/fd/0; cat; echo end-of-input")
    deadline = time.monotonic() + 30
    while pydock.inspect("bg")["State"]["Running"]:
        assert time.monotonic() < deadline, "the container did not end at its input's end"
        time.sleep(0.05)
    logs = pydock.ok("logs", "bg")
    assert re.fullmatch(r"pipe:\[\d+\]\nend-of-input\n", logs), logs


def test_exec_cannot_read_back_the_log_it_appends_to(pydock: Pydock, tmp_path: Path) -> None:
    pydock.ok("run", "-d", "--name", "box", "sleep", "1000")
    log = tmp_path / "admin.log"
    log.write_text("earlier secret\n")
    log.chmod(0o600)
    # Reopening stdout for reading gives the log's earlier content, were stdout the log
    # itself; with exec's pipe, a read end where nothing comes (cat is killed, and waited
    # for, since it would take what comes next). Then stdin, stdout, stderr and the exit
    # code must all still go through.
    command = "cat /proc/self/fd/1 & sleep 1; kill $!; wait; tr a-z A-Z; echo err >&2; exit 7"
    with log.open("ab") as stdout:
        result = subprocess.run(cli(pydock, "exec", "-i", "box", "sh", "-c", command),
                                input=b"appended\n", stdout=stdout, stderr=subprocess.PIPE,
                                env=pydock.env, timeout=60)
    assert (result.returncode, result.stderr) == (7, b"err\n")
    assert log.read_text() == "earlier secret\nAPPENDED\n"


def test_exec_returns_when_its_command_exits(pydock: Pydock) -> None:
    """A background process that keeps exec's output open does not hold the CLI (as with
    docker exec), nor the caller's pipe: the command's own output is all shown."""
    pydock.ok("run", "-d", "--name", "box", "sleep", "1000")
    started = time.monotonic()
    result = pydock("exec", "box", "sh", "-c", "sleep 30 & seq 1 50000; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == [str(n) for n in range(1, 50001)]
    assert time.monotonic() - started < 15


# -- the session keyring -------------------------------------------------------

def keyring(result: subprocess.CompletedProcess[str]) -> str:
    """The probe's session keyring serial (a refused keyctl fails the test)."""
    assert result.returncode == 0 and result.stdout.strip().isdigit(), (
        f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}")
    return result.stdout.strip()


# Docker's seccomp profile refuses keyctl, which would hide whether the keyring is fresh.
UNCONFINED = ("--security-opt", "seccomp=unconfined")


def test_containers_and_execs_get_fresh_session_keyrings(pydock: Pydock,
                                                         tmp_path: Path) -> None:
    image = import_probe_image(pydock, tmp_path, ["keyring"])
    own = keyring(subprocess.run([str(build_probe("keyring", tmp_path))],
                                 capture_output=True, text=True, check=False))
    first = keyring(pydock("run", "--rm", *UNCONFINED, "--image", image, "--cap-drop", "ALL",
                           "/probes/keyring"))
    pydock.ok("run", "-d", *UNCONFINED, "--name", "box", "--image", image,
              "/bin/busybox", "sleep", "1000")
    execs = [keyring(pydock("exec", "box", "/probes/keyring")) for _ in range(2)]
    assert len({own, first, *execs}) == 4, (own, first, execs)


# -- the working directory (CVE-2024-21626) -----------------------------------

def run_with_fd_7(pydock: Pydock, directory: Path,
                  *args: str) -> subprocess.CompletedProcess[str]:
    """pydock started as ``pydock ... 7<DIRECTORY``: a host directory on fd 7."""
    return subprocess.run(["sh", "-c", 'exec "$@" 7<"$DIRECTORY"', "sh", *cli(pydock, *args)],
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env={**pydock.env, "DIRECTORY": str(directory)}, timeout=60)


def host_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "host-dir"
    directory.mkdir()
    (directory / "host-file").write_text("host\n")
    return directory


def assert_not_in_host_directory(result: subprocess.CompletedProcess[str],
                                 directory: Path) -> None:
    """Refused with a clear error, or started somewhere in the container: never in the
    host's directory, and nothing made there."""
    assert "host-file" not in result.stdout, result.stdout
    assert sorted(path.name for path in directory.iterdir()) == ["host-file"]
    if result.returncode != 0:
        assert result.returncode == 125, result
        assert result.stderr.startswith("pydock: ") and "Traceback" not in result.stderr


def test_run_workdir_through_a_leaked_fd_stays_in_the_container(pydock: Pydock,
                                                                 tmp_path: Path) -> None:
    directory = host_directory(tmp_path)
    for workdir in ("/proc/self/fd/7", "/proc/self/fd/7/made"):
        result = run_with_fd_7(pydock, directory, "run", "--rm", "-w", workdir, "ls")
        assert_not_in_host_directory(result, directory)


def test_image_workdir_through_a_leaked_fd_stays_in_the_container(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    directory = host_directory(tmp_path)
    tag_with_config(pydock, "leaky", WorkingDir="/proc/self/fd/7", Cmd=["ls"])
    result = run_with_fd_7(pydock, directory, "run", "--rm", "--image", "leaky")
    assert_not_in_host_directory(result, directory)


def test_exec_workdir_through_a_leaked_fd_stays_in_the_container(pydock: Pydock,
                                                                  tmp_path: Path) -> None:
    directory = host_directory(tmp_path)
    pydock.ok("run", "-d", "--name", "box", "sleep", "1000")
    result = run_with_fd_7(pydock, directory, "exec", "-w", "/proc/self/fd/7", "box", "ls")
    assert_not_in_host_directory(result, directory)


# -- exec's root ---------------------------------------------------------------

def test_exec_from_a_chroot_lands_in_the_container(pydock: Pydock, tmp_path: Path) -> None:
    """pydock run inside a chroot whose / is a bind mount (a build sandbox, a CI jail):
    exec must enter the container's root, not its mount namespace's root (the host's /)."""
    jail = tmp_path / "jail"
    jail.mkdir()

    def in_jail(*args: str) -> str:
        return " ".join(["chroot", str(jail), *cli(pydock, *args)])

    script = " && ".join([
        f"mount --rbind / {jail}",
        in_jail("run", "-d", "--name", "box", "sh", "-c",
                "'echo written-inside > /tmp/inside; exec sleep 1000'"),
        # Until the first process has written it and exec'd sleep (a bounded wait).
        in_jail("exec", "box", "sh", "-c",
                "'for i in $(seq 100); do [ -e /tmp/inside ] && exit; sleep 0.1; done'"),
        in_jail("exec", "box", "cat", "/proc/1/cmdline", "/tmp/inside"),
        in_jail("exec", "-w", "/tmp", "box", "pwd"),
    ])
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             f"{script}; code=$?; {in_jail('rm', '-f', 'box')} >/dev/null; "
                             "exit $code"],
                            capture_output=True, text=True, env=pydock.env, timeout=60)
    assert result.returncode == 0, result.stderr
    container_id, rest = result.stdout.split("\n", 1)  # run -d prints the id
    assert re.fullmatch("[0-9a-f]{64}", container_id)
    assert rest == "sleep\x001000\x00written-inside\n/tmp\n"
