"""The CLI attached to a container: its signals, its terminal, the monitor's reports.

While ``pydock run`` (in the foreground) or ``pydock exec`` waits for a container, what
the user does to the CLI is meant for the container: a signal sent to the CLI is
forwarded (to the monitor, which passes it on, or to exec's own child), a resized
terminal resizes the container's, and with ``-i -t`` the user's terminal is in raw mode
so that every key, ^C included, reaches the container's terminal.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydock.core.runtime.cgroups import Cgroup
    from pydock.core.runtime.monitor import Session
    from pydock.core.runtime.spawn import Exited, ProcessSpec

Handlers = dict[int, "signal._HANDLER"]


def window_size() -> bytes:
    from pydock.core.runtime import terminal

    return terminal.window_size()


def raw_terminal(wanted: bool) -> contextlib.AbstractContextManager[None]:
    """The user's terminal in raw mode while typed input goes to a container's terminal."""
    if not wanted:
        return contextlib.nullcontext()
    from pydock.core.runtime import terminal

    return terminal.raw_mode(0)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Hold the signals meant for the container while its monitor (or exec's child) is
    forked: they are delivered once forwarding is in place, never to a half-made process."""
    from pydock.core.runtime.spawn import FORWARDED_SIGNALS

    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED_SIGNALS)


def forward_signals(pid: int, pty: tuple[int, int] | list[int] | None) -> Handlers:
    """Signals sent to the CLI go to ``pid`` (the monitor, which passes them to the
    container, or exec's child); with a terminal, SIGWINCH resizes the container's
    terminal instead. ``pty``: exec's (master, slave), or for run a list that holds the
    master once the container has sent it. Returns the handlers to put back
    (:func:`restore_signals`)."""
    from pydock.core.runtime.spawn import FORWARDED_SIGNALS

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    def resize(_signum: int, _frame: object) -> None:
        from pydock.core.runtime import terminal

        if pty:
            terminal.copy_window_size(pty[0])

    previous: Handlers = {}
    for signum in FORWARDED_SIGNALS:
        handler = resize if signum == signal.SIGWINCH and pty is not None else forward
        previous[signum] = signal.signal(signum, handler)
    return previous


def restore_signals(previous: Handlers) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


def follow(session: Session, pty: list[int] | None, interactive: bool, detach: bool,
           lost: Callable[[], Exited]) -> Exited | None:
    """Wait for the monitor's reports: None once running if ``detach``, else the exit,
    or what ``lost`` says if the monitor died before its last report. With -t, ``pty``
    is where the terminal's master goes once the monitor passes it on (a "pty" report;
    a restarted container sends a new one)."""
    from pydock.core.runtime import monitor

    with raw_terminal(pty is not None and interactive):
        while True:
            if pty and not detach:
                from pydock.core.runtime import terminal

                terminal.forward_input(pty[0], session.status_fd, 0 if interactive else None)
            kind, rest = session.next_message()
            if kind == "pty":
                if pty is not None and session.fds:
                    for old in pty:
                        os.close(old)
                    pty[:] = [session.fds.pop(0)]
                continue
            if kind == "started":
                if detach:
                    return None
                continue
            if kind == "exited":
                return monitor.parse_exit(rest)
            return lost()


def exec_in(container: int, process: ProcessSpec, tty: bool, interactive: bool,
            cgroup: Cgroup | None) -> Exited:
    """Start ``process`` in the running container whose first process is the pidfd
    ``container`` and stay attached to it until it exits: its exit.

    Its stdio is a terminal from the container's own devpts (with ``tty``, as for
    ``run``: its master comes back over a socket), or pipes that this CLI relays
    (:func:`relay.relay_exec`), never the CLI's own fds: the container would reopen the
    files behind them through /proc/self/fd, and reach the caller's terminal.
    """
    from pydock.core.runtime import relay, spawn, terminal

    pipes = None
    pty: list[int] = []  # the terminal's master, once received
    ours = -1
    if tty:
        import socket

        ours, theirs = (end.detach() for end in socket.socketpair())
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        stdio = spawn.Stdio(null, null, null, pty_socket=theirs,
                            window_size=terminal.window_size())
    else:
        pipes = [os.pipe2(os.O_CLOEXEC) for _ in range(3)]  # stdin, stdout, stderr
        stdio = spawn.Stdio(pipes[0][0], pipes[1][1], pipes[2][1])
    with signals_blocked():
        started = spawn.start_in(container, process, stdio,
                                 cgroup.join if cgroup is not None else None)
        # Our own child: its pid cannot be reused before we reap it.
        previous = forward_signals(started.pid, pty)
    try:
        for fd in {stdio.stdin, stdio.stdout, stdio.stderr, stdio.pty_socket} - {-1}:
            os.close(fd)  # the child's ends
        failed = spawn.exec_report(started)
        if ours >= 0:
            master = terminal.receive_terminal(ours)
            if master is not None:
                pty.append(master)
        if failed is None:
            pidfd = os.pidfd_open(started.pid)
            if pipes is not None:
                relay.relay_exec(relay.relayed_stdin(interactive), pipes[0][1],
                                 {pipes[1][0]: 1, pipes[2][0]: 2}, pidfd)
            elif pty:
                with raw_terminal(interactive):
                    terminal.relay(pty[0], 0 if interactive else None, pidfd)
            os.close(pidfd)
        elif pipes is not None:
            os.close(pipes[0][1])  # relay_exec's to close otherwise
        _, status = os.waitpid(started.pid, 0)
    finally:
        restore_signals(previous)
        if pipes is not None:
            os.close(pipes[1][0])
            os.close(pipes[2][0])
        for fd in [*pty, *((ours,) if ours >= 0 else ())]:
            os.close(fd)
    return failed or spawn.Exited(spawn.exit_status(status))
