"""``-t``: the container's pseudo-terminal, opened in its own devpts and its master sent
back (:func:`container_terminal`), the user's terminal in raw mode while it is in use, and
the window size kept in step.

In raw mode the user's terminal turns nothing into signals: ^C reaches the container's
pseudo-terminal as a byte, and its line discipline interrupts the container's foreground
process (a ``sleep`` typed at the container's shell), never pydock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import stat
import termios
import tty
from collections.abc import Iterator

from pydock.core.files import write_all

_CHUNK = 1 << 16


TIOCGPTPEER = 0x5441  # open the slave of a master (Linux 4.13+): no path to look up
TIOCSPTLCK = 0x40045431  # unlockpt(3)


def container_terminal(sock: int, window_size: bytes) -> None:
    """In the container's first process, its root set up: open a pseudo-terminal in the
    container's own devpts (``/dev/pts/ptmx``), make its slave (``/dev/pts/0``) fds 0-2 and
    the controlling terminal, and send the master to the monitor over ``sock``.

    As runc does: a terminal from the host's devpts would be a ``/dev/pts/N`` that does
    not exist in the container, where ``tty`` then says "not a tty" and ttyname() fails
    (tmux, screen, sudo). The slave is opened through the master (TIOCGPTPEER), not by a
    path the container's root could redirect.
    """
    import socket
    import struct

    # The container's root may have put something else there (exec -t joins a running
    # one): only a pseudo-terminal multiplexer (char 5:2) is taken; a FIFO would hang us.
    master = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NONBLOCK)
    try:
        st = os.fstat(master)
        device = (os.major(st.st_rdev), os.minor(st.st_rdev))
        if not stat.S_ISCHR(st.st_mode) or device != (5, 2):
            raise OSError("/dev/pts/ptmx in the container is not a terminal multiplexer")
        os.set_blocking(master, True)
        fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
        if window_size:
            fcntl.ioctl(master, termios.TIOCSWINSZ, window_size)
        slave = fcntl.ioctl(master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        for fd in (0, 1, 2):
            os.dup2(slave, fd)  # inheritable: they are the command's
        os.close(slave)
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        with socket.socket(fileno=os.dup(sock)) as channel:
            socket.send_fds(channel, [b"pty"], [master])
    finally:
        os.close(master)
        os.close(sock)


def receive_terminal(sock: int) -> int | None:
    """The master :func:`container_terminal` sent on ``sock``, or None if the process
    ended before it could (its setup failed)."""
    import socket

    with socket.socket(fileno=os.dup(sock)) as channel:
        _data, fds, _flags, _address = socket.recv_fds(channel, 16, 1)
    for fd in fds[1:]:
        os.close(fd)
    if fds:
        os.set_inheritable(fds[0], False)
    return fds[0] if fds else None


def window_size() -> bytes:
    """The user's terminal's size (TIOCGWINSZ of stdin), or b"" if stdin is no terminal."""
    try:
        return bytes(fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        return b""


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
