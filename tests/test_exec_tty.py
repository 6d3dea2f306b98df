"""``exec`` into running containers, and ``-i -t`` driven through a real pseudo-terminal."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import struct
import termios
import time
from collections.abc import Iterator

import pytest

from pydock.testing.cli import PYDOCK, Pydock


class Terminal:
    """pydock started on a fresh pseudo-terminal, as if typed into a terminal emulator."""

    def __init__(self, pydock: Pydock, *args: str, rows: int = 33, cols: int = 111) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.execve(PYDOCK, [PYDOCK, "--root", str(pydock.root), *args], pydock.env)
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.seen = b""

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def expect(self, wanted: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while wanted.encode() not in self.seen:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"{wanted!r} not seen; the terminal shows {self.seen!r}"
            if select.select([self.fd], [], [], remaining)[0]:
                try:
                    self.seen += os.read(self.fd, 4096)
                except OSError:  # EIO: pydock has exited and closed the terminal
                    assert wanted.encode() in self.seen, f"{wanted!r} not in {self.seen!r}"
        self.seen = self.seen[self.seen.index(wanted.encode()) + len(wanted):]

    def exit_code(self, timeout: float = 15) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            # Keep reading: pydock must not block on a full terminal while it exits.
            if select.select([self.fd], [], [], 0.05)[0]:
                with contextlib.suppress(OSError):
                    os.read(self.fd, 4096)
        raise AssertionError("pydock did not exit")


@pytest.fixture
def terminals() -> Iterator[list[Terminal]]:
    opened: list[Terminal] = []
    yield opened
    for terminal in opened:
        os.close(terminal.fd)


# What the container prints differs from what is typed ($((6*7)) against 42), so the
# terminal's echo of the input never passes for the output.

def test_interactive_shell_on_a_terminal(pydock: Pydock, terminals: list[Terminal]) -> None:
    shell = Terminal(pydock, "run", "-it", "--rm", "--name", "tty", "sh")
    terminals.append(shell)
    shell.type("echo $((6*7))\n")
    shell.expect("42")
    shell.type("[ -t 0 ] && [ -t 1 ] && echo tty$((1+1))\n")
    shell.expect("tty2")
    shell.type("exit 3\n")
    assert shell.exit_code() == 3


def test_window_size_reaches_the_container(pydock: Pydock, terminals: list[Terminal]) -> None:
    shell = Terminal(pydock, "run", "-it", "--rm", "sh", rows=33, cols=111)
    terminals.append(shell)
    shell.type("stty size\n")
    shell.expect("33 111")
    shell.type("exit\n")
    assert shell.exit_code() == 0


def test_a_resized_terminal_resizes_the_containers(pydock: Pydock,
                                                  terminals: list[Terminal]) -> None:
    shell = Terminal(pydock, "run", "-it", "--rm", "sh", rows=33, cols=111)
    terminals.append(shell)
    shell.type("stty size\n")
    shell.expect("33 111")
    # As a terminal emulator does: the kernel sends SIGWINCH to pydock, in the foreground.
    fcntl.ioctl(shell.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    time.sleep(0.3)
    shell.type("stty size\n")
    shell.expect("40 100")
    shell.type("exit\n")
    assert shell.exit_code() == 0


def test_ctrl_c_interrupts_the_containers_command_not_pydock(
        pydock: Pydock, terminals: list[Terminal]) -> None:
    shell = Terminal(pydock, "run", "-it", "--rm", "sh")
    terminals.append(shell)
    shell.type("echo $((1+1))go\n")
    shell.expect("2go")
    started = time.monotonic()
    shell.type("sleep 30; echo $((2+2))slept\n")
    time.sleep(0.5)
    shell.type("\x03")
    shell.type("echo $((3+3))back\n")
    shell.expect("6back")
    assert time.monotonic() - started < 15
    assert b"4slept" not in shell.seen
    shell.type("exit 5\n")
    assert shell.exit_code() == 5


def test_exec_runs_in_the_containers_namespaces_root_and_environment(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "box", "-e", "FROM_RUN=1", "-w", "/tmp", "--hostname",
              "boxhost", "sh", "-c", "echo marker > /tmp/inside; exec sleep 60")
    pydock.wait_running("box")
    time.sleep(0.2)
    out = pydock.ok("exec", "-e", "FROM_EXEC=2", "box", "sh", "-c",
                    "echo $FROM_RUN $FROM_EXEC $(hostname); pwd; cat /tmp/inside; "
                    "cat /proc/1/cmdline | tr '\\0' ' '")
    assert out.splitlines() == ["1 2 boxhost", "/tmp", "marker", "sleep 60 "]
    pid = pydock.inspect("box")["State"]["Pid"]
    joined = pydock.ok("exec", "box", "sh", "-c",
                       "for ns in net mnt uts ipc pid; do readlink /proc/self/ns/$ns; done")
    theirs = [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("net", "mnt", "uts", "ipc", "pid")]
    assert joined.split() == theirs


@pytest.mark.parametrize(("command", "code"), [
    (("sh", "-c", "exit 9"), 9),
    (("no-such-command",), 127),
    (("/etc/passwd",), 126),
    (("sh", "-c", "kill -KILL $$"), 137),
])
def test_exec_exit_codes_are_dockers(pydock: Pydock, command: tuple[str, ...],
                                     code: int) -> None:
    pydock.ok("run", "-d", "--name", "box", "sleep", "60")
    assert pydock("exec", "box", *command).returncode == code


def test_exec_as_another_user_and_with_stdin(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "box", "sleep", "60")
    assert pydock.ok("exec", "-u", "nobody", "box", "id", "-u") == "65534\n"
    assert pydock.ok("exec", "-i", "box", "cat", input="typed\n") == "typed\n"


def test_exec_refuses_a_container_that_is_not_running(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "done", "true")
    assert pydock.refused("exec", "done", "true") == "container done is not running"


def test_exec_with_a_terminal(pydock: Pydock, terminals: list[Terminal]) -> None:
    pydock.ok("run", "-d", "--name", "box", "sleep", "60")
    shell = Terminal(pydock, "exec", "-it", "box", "sh")
    terminals.append(shell)
    shell.type("[ -t 0 ] && echo tty$((2+5))\n")
    shell.expect("tty7")
    shell.type("exit 4\n")
    assert shell.exit_code() == 4
