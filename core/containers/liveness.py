"""Whether a recorded container is alive: the record corrected by what the kernel says.

A record says what was last known. After a crash (of the CLI, the monitor, the host) it
may say ``running`` of a process long gone, or name a pid the kernel has since given to
another process: a pid counts only together with its start time.
"""

from __future__ import annotations

from pydock.core.containers.state import CREATED, EXITED, RUNNING, ContainerRecord
from pydock.core.errors import PydockError
from pydock.core.processes import process_start_time

KILL_TIMEOUT = 10.0


def process_alive(record: ContainerRecord) -> bool:
    """Whether the recorded process is alive: the pid *and* its start time must match."""
    return record.pid_start != 0 and process_start_time(record.pid) == record.pid_start


def monitor_alive(record: ContainerRecord) -> bool:
    """Whether the monitor that records the container's end is alive (pid and start time)."""
    return record.monitor_pid > 0 and process_start_time(record.monitor_pid) == \
        record.monitor_start


def is_running(record: ContainerRecord) -> bool:
    return live_status(record) == RUNNING


def live_status(record: ContainerRecord) -> str:
    """The recorded status, corrected by what the kernel says about the recorded process."""
    if record.pid_start == 0:  # no process was ever recorded
        return EXITED if record.status == RUNNING else record.status
    if record.status == EXITED or not process_alive(record):
        # Its process ended and no one recorded how: the monitor died.
        return EXITED
    if record.status == CREATED and monitor_alive(record):
        return CREATED  # being started: its monitor records it running once it execs
    # Recorded running, or its monitor died after letting the process run its command.
    return RUNNING


def kill_process(name: str, pid: int, pid_start: int) -> None:
    """SIGKILL container ``name``'s recorded process (a record's or a corrupt record's
    remains) and wait for it; PydockError if it does not die."""
    from pydock.core import processes

    if not processes.kill(pid, pid_start, KILL_TIMEOUT):
        raise PydockError(f"container {name} (pid {pid}) did not die "
                          f"within {KILL_TIMEOUT:.0f}s of SIGKILL")
