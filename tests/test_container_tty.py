"""``-t``: the container's terminal comes from its own devpts, as runc's does, so that
``tty`` and ttyname() work inside; ``-t`` without a terminal allocates one anyway."""

from __future__ import annotations

from test_exec_tty import Terminal, terminals  # noqa: F401 (a fixture)

from pydock.testing.cli import Pydock


def test_tty_is_the_containers_own_pts_0(pydock: Pydock, image: tuple[str, ...],
                                         terminals: list[Terminal]) -> None:  # noqa: F811
    shell = Terminal(pydock, "run", "-it", "--rm", *image, "sh")
    terminals.append(shell)
    shell.type("tty; readlink /proc/self/fd/0; ls /dev/pts | tr '\\n' ' '; echo $((40+2))\n")
    shell.expect("/dev/pts/0\r\n/dev/pts/0\r\n0 ptmx 42")
    shell.type("stty size\n")
    shell.expect("33 111")
    shell.type("exit 5\n")
    assert shell.exit_code() == 5


def test_t_without_a_terminal_still_gives_one(pydock: Pydock, image: tuple[str, ...]) -> None:
    result = pydock("run", "--rm", "-t", *image, "sh", "-c", "tty; test -t 1 && echo out-tty")
    # (text mode reads the terminal's \r\n as \n)
    assert (result.returncode, result.stdout) == (0, "/dev/pts/0\nout-tty\n")
    # Detached, and started again: a new terminal each time, in the log.
    pydock.ok("run", "-d", "-t", "--name", "box", *image, "tty")
    assert pydock.ok("wait", "box") == "0\n"
    pydock.ok("start", "-a", "box")
    assert pydock.ok("logs", "box") == "/dev/pts/0\n/dev/pts/0\n"


def test_a_restarted_container_gets_a_terminal_again(pydock: Pydock) -> None:
    result = pydock("run", "-t", "--name", "box", "--restart", "on-failure:1", "sh", "-c",
                    "tty; exit 1")
    assert (result.returncode, result.stdout) == (1, "/dev/pts/0\n/dev/pts/0\n")


def test_exec_t_gets_a_terminal_of_the_containers_devpts(
        pydock: Pydock, terminals: list[Terminal]) -> None:  # noqa: F811
    pydock.ok("run", "-d", "--name", "box", "sleep", "600")
    assert pydock.ok("exec", "-t", "box", "tty") == "/dev/pts/0\n"
    shell = Terminal(pydock, "exec", "-it", "box", "sh")
    terminals.append(shell)
    shell.type("tty; stty size; echo $((40+2))\n")
    shell.expect("/dev/pts/")
    shell.expect("33 111")
    shell.expect("42")
    shell.type("exit 4\n")
    assert shell.exit_code() == 4
    pydock.ok("rm", "-f", "box")
