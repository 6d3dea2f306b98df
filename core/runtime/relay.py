"""Relaying a container's stdio through pipes that pydock owns, as docker and conmon do.

A container never gets the caller's own file descriptors. A descriptor is more than a
stream: through ``/proc/self/fd/N`` the container reopens the file behind it, with a mode
of its choosing (a 0600 host file given as stdin is written; a log opened for appending
is read back), and the caller's terminal takes TIOCSTI. So the container's fds 0, 1 and 2
are pipes: pydock reads the caller's stdin and writes the container's stdin pipe, reads the
container's output pipes and writes the caller's stdout and stderr.

:class:`InputRelay` is the stdin half, used by the monitor (``run``) and by ``exec``; the
output half of ``run`` is the monitor's (it also writes the log); :func:`relay_exec` is
``exec``'s whole loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import select
import termios

from pydock.core.files import write_all

_CHUNK = 1 << 16


class InputRelay:
    """Moves ``source`` (the caller's stdin) to ``sink`` (the write end of the container's
    stdin pipe) from a poll loop, never blocking it: a container that does not read its
    input must not stop its output from being copied.

    ``sink`` is made non-blocking (it is a pipe of pydock's own). The bytes go by splice(2),
    kernel to kernel, and by read and write where the kernel cannot splice the source;
    while the pipe is full, ``source`` is not read, so the caller's writer is held back as
    it would be by a pipe of its own. The sink is closed at the source's end (the
    container reads EOF) or once the container has closed its read end; ``source`` is
    left open.
    """

    def __init__(self, poller: select.poll, source: int, sink: int) -> None:
        self.poller = poller
        self.source = source
        self.sink = sink
        self.splicing = True
        self.pending = b""  # read, not yet written (when not splicing)
        self.closed = False
        os.set_blocking(sink, False)
        poller.register(source, select.POLLIN)
        # No events asked for: POLLERR alone, once the container has closed its read end.
        poller.register(sink, 0)

    def handles(self, fd: int) -> bool:
        return fd in (self.source, self.sink)

    def on_event(self, fd: int, events: int) -> None:
        if self.closed:  # an event of the same poll() as the one that closed it
            return
        if fd == self.sink and events & (select.POLLERR | select.POLLHUP):
            self.close()  # the container closed its stdin: what is left is dropped
        elif fd == self.source:
            self._move()
        else:  # room in the pipe again
            self._write()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(KeyError):
                self.poller.unregister(self.source)
            self.poller.unregister(self.sink)
            os.close(self.sink)

    def _move(self) -> None:
        if self.splicing:
            try:
                if not os.splice(self.source, self.sink, _CHUNK, flags=os.SPLICE_F_NONBLOCK):
                    self.close()  # EOF: the container sees the end
                return
            except BlockingIOError:  # the pipe is full
                self._wait_for_room()
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:  # EPIPE: the container closed its stdin
                    self.close()
                    return
                self.splicing = False  # a source the kernel cannot splice (a terminal)
        data = b""
        with contextlib.suppress(OSError):
            data = os.read(self.source, _CHUNK)
        if not data:  # EOF, or a source gone bad: the container sees the end
            self.close()
            return
        self.pending = data
        self._write()

    def _write(self) -> None:
        try:
            written = os.write(self.sink, self.pending) if self.pending else 0
        except BlockingIOError:
            written = 0
        except OSError:  # EPIPE: the container closed its stdin; drop the rest
            self.close()
            return
        self.pending = self.pending[written:]
        if self.pending:
            self._wait_for_room()
        else:
            self.poller.modify(self.sink, 0)
            self.poller.register(self.source, select.POLLIN)

    def _wait_for_room(self) -> None:
        self.poller.modify(self.sink, select.POLLOUT)
        with contextlib.suppress(KeyError):
            self.poller.unregister(self.source)


def relayed_stdin(interactive: bool) -> int | None:
    """The fd whose input goes to the container's stdin pipe: 0 with ``-i``, else None
    (the container reads EOF at once), as docker does.

    Without ``-i`` nothing is taken from the caller's stdin, pipe, file or terminal: what is
    typed there is meant for the user's shell, and a relay would read it eagerly, whether
    the command reads its input or not (a ``pydock run ... &`` left in the background would
    eat the shell's keystrokes); a script's stdin is meant for the script's next command.
    """
    return 0 if interactive else None


def relay_exec(stdin: int | None, stdin_pipe: int, outputs: dict[int, int],
               process: int) -> None:
    """``exec``'s relay: ``stdin`` (if not None) to ``stdin_pipe``, each output pipe to its
    fd in ``outputs`` (pipe -> 1 or 2), until the process behind the pidfd ``process``
    exits. ``stdin_pipe`` is closed on return; the output pipes are the caller's to close.

    Returns when the process exits, as ``docker exec`` does, with the output it wrote
    shown: what the pipes hold at that moment is copied, and no more. A background
    process it left behind may keep the pipes open for as long as it lives; waiting for
    their EOF would tie the CLI to it, so it writes into closed pipes instead (EPIPE).
    """
    poller = select.poll()
    relay = None
    if stdin is None:
        os.close(stdin_pipe)
    else:
        relay = InputRelay(poller, stdin, stdin_pipe)
    for pipe in outputs:
        poller.register(pipe, select.POLLIN)
    poller.register(process, select.POLLIN)
    targets = dict(outputs)  # pipe -> caller's fd; a target that fails is dropped
    spliced = set(outputs)  # the pipes whose target the kernel can splice to
    while True:
        for fd, events in poller.poll():
            if fd == process:
                for pipe in outputs:
                    _drain_available(pipe, targets, spliced)
                if relay is not None:
                    relay.close()
                return
            if relay is not None and relay.handles(fd):
                relay.on_event(fd, events)
            elif not _forward(fd, _CHUNK, targets, spliced):
                poller.unregister(fd)


def _drain_available(pipe: int, targets: dict[int, int], spliced: set[int]) -> None:
    """Forward what ``pipe`` holds now: all the output of a process that has exited."""
    available = int.from_bytes(fcntl.ioctl(pipe, termios.FIONREAD, b"\0" * 4), "little")
    while available > 0:
        moved = _forward(pipe, min(available, _CHUNK), targets, spliced)
        if not moved:
            return
        available -= moved


def _forward(pipe: int, size: int, targets: dict[int, int], spliced: set[int]) -> int:
    """Move up to ``size`` bytes from ``pipe`` to its target; the bytes taken from the
    pipe, 0 at its end. splice(2) where the kernel can, else read and write: a target in
    append mode (``>> log``) or a terminal takes no splice (EINVAL). Once a target has
    failed (EPIPE, EIO: the caller's reader has gone), the output is read and dropped,
    so that the command never blocks on it."""
    target = targets.get(pipe)
    if target is not None and pipe in spliced:
        try:
            return os.splice(pipe, target, size)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                spliced.discard(pipe)
            else:
                del targets[pipe]
                target = None
    data = _read(pipe, size)
    if data and target is not None:
        try:
            write_all(target, data)
        except OSError:
            del targets[pipe]
    return len(data)


def _read(fd: int, size: int) -> bytes:
    try:
        return os.read(fd, size)
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.EBADF):
            return b""
        raise
