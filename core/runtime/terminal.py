"""The CLI's side of ``-t``: a pseudo-terminal for the container, the user's terminal in raw
mode while it is in use, and the window size kept in step.

In raw mode the user's terminal turns nothing into signals: ^C reaches the container's
pseudo-terminal as a byte, and its line discipline interrupts the container's foreground
process (a ``sleep`` typed at the container's shell), never pydock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import termios
import tty
from collections.abc import Iterator

from pydock.core.files import write_all

_CHUNK = 1 << 16


def open_pty() -> tuple[int, int]:
    """A (master, slave) pair, close-on-exec, sized like the user's terminal."""
    master, slave = os.openpty()
    copy_window_size(master)
    return master, slave


def copy_window_size(master: int) -> None:
    """Give the container's terminal the size of the user's (on start and on SIGWINCH);
    the kernel then sends SIGWINCH to the container's foreground process group."""
    with contextlib.suppress(OSError):
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
        fcntl.ioctl(master, termios.TIOCSWINSZ, size)


@contextlib.contextmanager
def raw_mode(fd: int) -> Iterator[None]:
    """The terminal on ``fd`` in raw mode, restored however the block ends."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSAFLUSH, saved)


def forward_input(master: int, until_readable: int, stdin: int | None) -> None:
    """Copy ``stdin`` (if given) to the container's terminal until ``until_readable`` (the
    monitor's report pipe) has something to read or is closed."""
    poller = select.poll()
    poller.register(until_readable, select.POLLIN)
    if stdin is not None:
        poller.register(stdin, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == until_readable:
                return
            data = b""
            with contextlib.suppress(OSError):
                data = os.read(fd, _CHUNK)
            if not data:  # end of input: the container keeps running, without it
                poller.unregister(fd)
                continue
            _write_all(master, data)


def relay(master: int, stdin: int | None, process: int) -> None:
    """For ``exec -t``: the container's terminal to our stdout, ``stdin`` (if given) to the
    terminal, until the process behind the pidfd ``process`` has ended and its last output
    is shown."""
    poller = select.poll()
    for fd in (master, process) + ((stdin,) if stdin is not None else ()):
        poller.register(fd, select.POLLIN)
    while True:
        for fd, _events in poller.poll():
            if fd == process:
                _drain(master)
                return
            data = b""
            with contextlib.suppress(OSError):  # EIO: the last slave fd was closed
                data = os.read(fd, _CHUNK)
            if not data:
                poller.unregister(fd)
                continue
            _write_all(1 if fd == master else master, data)


def _drain(master: int) -> None:
    poller = select.poll()
    poller.register(master, select.POLLIN)
    while poller.poll(0):
        try:
            data = os.read(master, _CHUNK)
        except OSError:
            return
        if not data:
            return
        _write_all(1, data)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):  # the reader has gone: nothing left to show
        write_all(fd, data)
