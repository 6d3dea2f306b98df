"""The monitor: one small process per container, what conmon is to podman.

``pydock run`` forks it once the container's record and storage exist. The monitor
leaves the CLI's session (so a closed terminal or a killed CLI does not reach it),
starts the container (:func:`pydock.core.runtime.spawn.start`) and owns it until it exits:

- the container's stdout and stderr are pipes, or a pseudo-terminal with ``-t``, read by
  the monitor alone: every chunk goes to the container's log and, while a CLI is
  attached, to that CLI's stdout or stderr as well;
- the container's stdin is a pipe too, which the monitor fills from the CLI's stdin
  (:mod:`pydock.core.runtime.relay`: the container never holds one of the caller's fds),
  or an empty pipe for a detached container;
- it has the container's pid recorded before the process does anything (:mod:`gate`),
  then the container recorded as running, then as exited with its exit code (and
  removed, with ``--rm``), through the callbacks in :class:`Callbacks`;
- it tells the CLI over a pipe (a socket with ``-t``): ``pty`` with the terminal's master,
  ``started PID``, then ``exited CODE MESSAGE``;
- with a restart policy (``--restart``), it starts the container again after it exits,
  as often as the policy says (:attr:`Callbacks.again`), until it is stopped.

An attached CLI that dies stops only the copy to its terminal: the output still goes to
the log and the exit code to the record. Signals sent to the CLI go to the monitor,
its parent, and from there to the container, its own child: neither pid can be reused
while the process that signals it has not reaped it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from pydock.core import failpoints
from pydock.core.driver import Mount
from pydock.core.errors import EXIT_PYDOCK_ERROR, PydockError
from pydock.core.files import write_all
from pydock.core.runtime import spawn
from pydock.core.runtime.gate import Gate
from pydock.core.runtime.logs import STDERR, STDOUT, LogWriter
from pydock.core.runtime.relay import InputRelay, relayed_stdin

if TYPE_CHECKING:
    from pydock.core.runtime.cgroups import Cgroup

# What a container whose monitor failed or died exited with, as far as anyone can tell.
EXIT_MONITOR_LOST = EXIT_PYDOCK_ERROR
_CHUNK = 1 << 16


class Launch(NamedTuple):
    """What the monitor starts, and how the container's stdio is wired."""

    spec: spawn.ProcessSpec
    rootfs: str
    mounts: Sequence[Mount]
    log_path: str
    # The CLI's stdin, stdout and stderr reach the container through the monitor's pipes;
    # a detached container reads an empty pipe and writes to its log only.
    attach: bool
    # -t: the container opens a pseudo-terminal in its own devpts and sends its master
    # here; the monitor reads the output from it and passes it on to the CLI (a "pty"
    # report carrying the descriptor), which writes the input and keeps the window size.
    tty: bool = False
    window_size: bytes = b""  # the user's terminal's, for the container's to start with
    # With resource limits: the container's first step is to join it; the monitor reads
    # whether the OOM killer struck, then removes it, once the container has ended.
    cgroup: Cgroup | None = None
    # -i: a terminal on the CLI's stdin is relayed too (see relay.relayed_stdin).
    interactive: bool = False


class Callbacks(NamedTuple):
    """What the monitor has done at each step; it runs these in its own process."""

    forked: Callable[[int], None]  # the container's pid, before the process does anything
    started: Callable[[int], None]  # the container's pid, once its command is exec'd
    exited: Callable[[spawn.Exited], None]  # its exit; with --rm, remove it here
    # Its restart policy, asked after each exit with how often it was restarted: None to
    # let it end, or the record's lock (held) and a new cgroup to start it again with.
    again: Callable[[spawn.Exited, int], tuple[int, Cgroup | None] | None] = (
        lambda _exited, _restarts: None)


class Session:
    """The CLI's side: the monitor's pid and the pipe it reports on."""

    def __init__(self, monitor_pid: int, status_fd: int, carries_fds: bool = False) -> None:
        self.monitor_pid = monitor_pid
        self.status_fd = status_fd
        self._pending = b""
        # With -t the reports come on a socket, and a "pty" report carries a descriptor.
        self.carries_fds = carries_fds
        self.fds: list[int] = []

    def next_message(self) -> tuple[str, str]:
        """The next ``(kind, rest)`` report; ``("lost", "")`` if the monitor died first."""
        while b"\n" not in self._pending:
            chunk = self._receive()
            if not chunk:
                return "lost", ""
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        kind, _, rest = line.decode(errors="replace").partition(" ")
        return kind, rest

    def _receive(self) -> bytes:
        if not self.carries_fds:
            return os.read(self.status_fd, 4096)
        import socket

        with socket.socket(fileno=os.dup(self.status_fd)) as channel:
            data, fds, _flags, _address = socket.recv_fds(channel, 4096, 4)
        for fd in fds:
            os.set_inheritable(fd, False)
        self.fds += fds
        return data

    def close(self) -> None:
        os.close(self.status_fd)
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def parse_exit(rest: str) -> spawn.Exited:
    code, _, message = rest.partition(" ")
    # Undoes _report's escapes: a doubled backslash is one backslash, backslash-n a newline.
    unescaped = "\\".join(part.replace("\\n", "\n") for part in message.split("\\\\"))
    return spawn.Exited(int(code), unescaped)


def launch(request: Launch, callbacks: Callbacks, lock_fd: int) -> Session:
    """Fork the monitor, which starts the container; returns at once.

    ``lock_fd`` holds the record's lock: the monitor inherits it and lets go once the
    container is recorded as running; the CLI's copy is closed here. The caller has
    :data:`spawn.FORWARDED_SIGNALS` blocked, and forwards them to
    ``Session.monitor_pid`` once this returns.
    """
    if request.tty:  # a socket, to pass the terminal's master on
        import socket

        ends = socket.socketpair()
        status_read, status_write = (end.detach() for end in ends)
    else:
        status_read, status_write = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(status_read)
        _monitor(request, callbacks, lock_fd, status_write)
    os.close(status_write)
    os.close(lock_fd)
    return Session(pid, status_read, carries_fds=request.tty)


def _monitor(request: Launch, callbacks: Callbacks, lock_fd: int, status_fd: int) -> NoReturn:
    """The monitor process, from fork to exit; never returns into the CLI's code."""
    try:
        os.setsid()
        stdin, outputs = _detach_from_cli(request)
        _Monitor(request, callbacks, lock_fd, status_fd, stdin, outputs).run()
    except BaseException as exc:  # nothing must escape: report, then leave
        _report(status_fd, f"exited {EXIT_MONITOR_LOST} monitor failed: {exc}")
    finally:
        os._exit(0)


def _detach_from_cli(request: Launch) -> tuple[int | None, dict[int, int]]:
    """Put /dev/null on fds 0-2 and keep private copies of what the monitor relays while
    the CLI is attached: its stdin, to copy to the container's, and its stdout and stderr.

    Otherwise a detached container would hold the CLI's stdout open, and whoever reads it
    (``$(pydock run -d ...)``) would wait for the container's end.
    """
    if request.attach:
        stdin = _dup_or_null(0) if relayed_stdin(request.interactive) is not None else None
        outputs = {STDOUT: _dup_or_null(1), STDERR: _dup_or_null(2)}
    else:
        stdin, outputs = None, {}
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)
    return stdin, outputs


def _dup_or_null(fd: int) -> int:
    try:
        return os.dup(fd)  # close-on-exec: only the container's own fds 0-2 are passed on
    except OSError:  # the CLI was started with this fd closed
        return os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)


class _Monitor:
    def __init__(self, request: Launch, callbacks: Callbacks, lock_fd: int, status_fd: int,
                 stdin: int | None, outputs: dict[int, int]) -> None:
        self.request = request
        self.callbacks = callbacks
        self.lock_fd = lock_fd
        self.status_fd = status_fd
        self.stdin = stdin  # the CLI's, relayed to the container's stdin pipe
        self.stdin_pipe = -1  # the write end of that pipe, while it is open
        self.outputs = outputs  # stream -> the attached CLI's fd; emptied when it leaves
        self.log: LogWriter | None = LogWriter(request.log_path)
        self.terminal_socket = -1  # -t: where the container's process sends its master

    def run(self) -> None:
        restarts = 0
        while True:
            exited = self._run_once()
            # Still held if the command never started (its exec or setup failed): the
            # policy's hook takes the lock anew.
            self._unlock()
            # Docker's policy: again while it says so, each time a little later (a command
            # that fails at once must not spin), and never once the container is stopped
            # or removed: the hook checks that under the record's lock, which it keeps
            # until the new process is recorded, as at creation.
            again = self.callbacks.again(exited, restarts)
            if again is None:
                break
            restarts += 1
            self.lock_fd, cgroup = again
            self.request = self.request._replace(cgroup=cgroup)
            signal.pthread_sigmask(signal.SIG_BLOCK, spawn.FORWARDED_SIGNALS)
        if self.request.spec.netns_fd >= 0:
            # Held across restarts, as docker's sandbox is: a restarted process finds its
            # address, veth and published ports. Closed before the exit is recorded, which
            # gives them back (the veth goes with the namespace).
            os.close(self.request.spec.netns_fd)
        self._finish(exited)

    def _run_once(self) -> spawn.Exited:
        """Start the container's process, attend it until it exits; how it ended."""
        sources, stdio = self._container_stdio()
        readers = list(sources)  # _copy_output forgets each at its end; closed below
        cgroup = self.request.cgroup
        gate = Gate()

        def first_steps() -> None:  # in the container's process
            if cgroup is not None:
                cgroup.join()
            gate.wait()

        failpoints.reached("monitor.before-start")
        try:
            started = spawn.start(self.request.spec, self.request.rootfs,
                                    self.request.mounts, stdio, first_steps)
        finally:
            for fd in {stdio.stdin, stdio.stdout, stdio.stderr, stdio.pty_socket} - {-1}:
                os.close(fd)
            gate.forked()
            if cgroup is not None:
                cgroup.close()
        _forward_signals_to(started.pid)
        failpoints.reached("monitor.started")
        try:
            self.callbacks.forked(started.pid)
            gate.open()
            failpoints.reached("monitor.released")
            exited = spawn.exec_report(started)
            if self.terminal_socket >= 0:
                master = self._take_terminal()
                if master is not None:
                    sources[master] = STDOUT
                    readers.append(master)
            if exited is None:
                self._attend(started.pid, sources)
        except BaseException as exc:
            # The container must not outlive the monitor that would record its end.
            with contextlib.suppress(ProcessLookupError):
                os.kill(started.pid, signal.SIGKILL)
            exited = spawn.Exited(EXIT_MONITOR_LOST, f"monitor failed: {exc}")
        _, status = os.waitpid(started.pid, 0)
        # Reaped: its pid is free for reuse, and nothing may be forwarded to it any more.
        for signum in spawn.FORWARDED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        failpoints.reached("monitor.container-exited")
        exited = exited or spawn.Exited(spawn.exit_status(status))
        if cgroup is not None:
            exited = exited._replace(oom_killed=cgroup.oom_killed())
            with contextlib.suppress(PydockError):  # rm and prune try again
                cgroup.remove()
        for fd in readers:  # the output pipes' read ends, or the terminal's master
            with contextlib.suppress(OSError):
                os.close(fd)
        return exited

    def _attend(self, pid: int, sources: dict[int, int]) -> None:
        """The container runs: record it, tell the CLI, copy its output until it closes."""
        self.callbacks.started(pid)
        failpoints.reached("monitor.recorded-running")
        self._unlock()
        _report(self.status_fd, f"started {pid}")
        self._copy_output(sources)

    def _take_terminal(self) -> int | None:
        """The master the container's process sent (None if its setup failed first),
        passed on to an attached CLI in a "pty" report."""
        from pydock.core.runtime.terminal import receive_terminal

        try:
            master = receive_terminal(self.terminal_socket)
        finally:
            os.close(self.terminal_socket)
            self.terminal_socket = -1
        if master is not None:
            import socket

            with contextlib.suppress(OSError), socket.socket(
                    fileno=os.dup(self.status_fd)) as channel:
                socket.send_fds(channel, [b"pty\n"], [master], socket.MSG_NOSIGNAL)
        return master

    def _unlock(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1

    def _container_stdio(self) -> tuple[dict[int, int], spawn.Stdio]:
        """The fds the monitor reads (fd -> stream), and the container's ends."""
        if self.request.tty:
            import socket

            ours, theirs = (end.detach() for end in socket.socketpair())
            os.set_inheritable(theirs, False)
            self.terminal_socket = ours
            self._close_stdin()  # the CLI writes input to the terminal itself
            # Placeholders until the container's terminal exists (terminal.container_terminal).
            null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            return {}, spawn.Stdio(null, null, null, pty_socket=theirs,
                                   window_size=self.request.window_size)
        in_read, in_write = os.pipe2(os.O_CLOEXEC)
        out_read, out_write = os.pipe2(os.O_CLOEXEC)
        err_read, err_write = os.pipe2(os.O_CLOEXEC)
        if self.stdin is None:
            os.close(in_write)  # detached: the container reads EOF at once
        else:
            self.stdin_pipe = in_write
        return ({out_read: STDOUT, err_read: STDERR},
                spawn.Stdio(in_read, out_write, err_write))

    def _close_stdin(self) -> None:
        if self.stdin is not None:
            os.close(self.stdin)
            self.stdin = None

    def _copy_output(self, sources: dict[int, int]) -> None:
        """Copy the container's output to the log (and the CLI) until it closes it."""
        poller = select.poll()
        for fd in sources:
            poller.register(fd, select.POLLIN)
        if self.outputs:
            # No events asked for: POLLERR alone, which a pipe's write end reports once
            # its reader, the attached CLI, is gone.
            poller.register(self.status_fd, 0)
        relay = None
        if self.stdin is not None and self.stdin_pipe >= 0:
            relay = InputRelay(poller, self.stdin, self.stdin_pipe)
        while sources:
            for fd, events in poller.poll():
                if relay is not None and relay.handles(fd):
                    relay.on_event(fd, events)
                    continue
                if fd == self.status_fd:
                    poller.unregister(fd)
                    self._cli_left()
                    continue
                data = _read(fd)
                if not data:
                    poller.unregister(fd)
                    del sources[fd]
                    continue
                stream = sources[fd]
                self._log(stream, data)
                if stream in self.outputs:
                    try:
                        write_all(self.outputs[stream], data)
                    except OSError:  # EPIPE, EIO: the CLI's terminal or pipe has gone
                        self._cli_left()
        if relay is not None:
            relay.close()
        self._close_stdin()

    def _log(self, stream: int, data: bytes) -> None:
        if self.log is None:
            return
        try:
            self.log.write(stream, data)
        except OSError:
            # A full disk stops the log, never the container (nor the copy to the CLI).
            self.log.close()
            self.log = None

    def _cli_left(self) -> None:
        for fd in self.outputs.values():
            os.close(fd)
        self.outputs = {}

    def _finish(self, exited: spawn.Exited) -> None:
        # From here on, nothing is forwarded: the container's pid is free for reuse.
        for signum in spawn.FORWARDED_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        if self.log is not None:
            self.log.close()
        self._cli_left()
        self._unlock()  # the hook may remove the container, which takes the lock anew
        self.callbacks.exited(exited)
        _report(self.status_fd, f"exited {exited.code} {exited.error}")


def _forward_signals_to(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in spawn.FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, spawn.FORWARDED_SIGNALS)


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, _CHUNK)
    except OSError as exc:
        if exc.errno == errno.EIO:  # a pty's master once the last slave fd is closed
            return b""
        raise


def _report(status_fd: int, message: str) -> None:
    # The CLI may be gone (detached, or killed): then nobody needs to hear it.
    # One line per report: newlines escaped, and backslashes too, so that a message that
    # holds a backslash and an "n" of its own comes back as it was.
    escaped = message.replace("\\", "\\\\").replace("\n", "\\n")
    with contextlib.suppress(OSError):
        os.write(status_fd, (escaped + "\n").encode())
