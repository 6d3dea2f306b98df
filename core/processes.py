"""Signalling and waiting for a recorded process, never a stranger that reused its pid.

A pid names a process only until its parent reaps it; pydock's records outlive that. So
a recorded process is opened as a pidfd and then checked against its recorded start
time: from then on the descriptor names that process alone, whatever happens to the pid.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Iterator


def process_start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (start time in clock ticks), 0 if there is no such process.

    Together with the pid it names one process for good: a recycled pid has another start time.
    A process that has exited but not been reaped (a zombie) counts as gone.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(b")") + 2:].split()
    # A zombie has exited already; only its parent has yet to collect its status.
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


@contextlib.contextmanager
def opened(pid: int, start_time: int) -> Iterator[int | None]:
    """A pidfd for the process ``pid`` started at ``start_time``; None if it has ended."""
    fd = None
    if pid > 0 and start_time:
        with contextlib.suppress(ProcessLookupError):
            fd = os.pidfd_open(pid)
        if fd is not None and process_start_time(pid) != start_time:
            os.close(fd)
            fd = None
    try:
        yield fd
    finally:
        if fd is not None:
            os.close(fd)


def send(pidfd: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # ended meanwhile
        signal.pidfd_send_signal(pidfd, signum)


def wait_for_exit(pidfd: int, timeout: float) -> bool:
    """Whether the process ended within ``timeout`` seconds (a pidfd reads as ready then)."""
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))


def kill(pid: int, start_time: int, timeout: float) -> bool:
    """SIGKILL the process ``pid`` started at ``start_time`` and wait until it has died;
    False if it was still there after ``timeout`` seconds (True if it was gone already)."""
    with opened(pid, start_time) as pidfd:
        if pidfd is None:
            return True
        send(pidfd, signal.SIGKILL)
        return wait_for_exit(pidfd, timeout)
