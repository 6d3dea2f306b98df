"""``pydock top``: a container's processes, as ``ps -ef`` shows them on the host.

The processes are those in the container's cgroup (:func:`pydock.core.runtime.cgroups.
process_ids`), which holds every one of them, exec'd ones included; each is read from the
host's /proc, with the host's pids and user names, as docker's top shows them.
"""

from __future__ import annotations

import os
import pwd
import time
from typing import NamedTuple

COLUMNS = ("UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD")


class Process(NamedTuple):
    uid: str
    pid: int
    ppid: int
    cpu: int  # percent of one CPU over its lifetime, as ps's C
    stime: str
    tty: str
    time: str
    cmd: str

    def row(self) -> list[str]:
        return [self.uid, str(self.pid), str(self.ppid), str(self.cpu), self.stime, self.tty,
                self.time, self.cmd]


def describe(pids: list[int]) -> list[Process]:
    """The processes among ``pids`` that still exist, read from /proc."""
    found = []
    for pid in pids:
        try:
            found.append(_read(pid))
        except (OSError, ValueError, IndexError):  # it ended while being read
            continue
    return found


def _read(pid: int) -> Process:
    with open(f"/proc/{pid}/stat") as f:
        stat_line = f.read()
    # The command name is in parentheses and may hold spaces or parentheses itself.
    fields = stat_line[stat_line.rindex(")") + 2:].split()
    ppid, tty_nr = int(fields[1]), int(fields[4])
    utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
    ticks = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/status") as f:
        uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [arg.decode(errors="replace") for arg in f.read().split(b"\0") if arg]
    comm = stat_line[stat_line.index("(") + 1:stat_line.rindex(")")]
    with open("/proc/uptime") as f:
        uptime = float(f.read().split()[0])
    age = max(uptime - start / ticks, 1e-9)
    cpu_seconds = (utime + stime) // ticks
    started = time.time() - age
    return Process(
        uid=_user(uid), pid=pid, ppid=ppid, cpu=int(100 * (utime + stime) / ticks / age),
        stime=time.strftime("%H:%M" if age < 86400 else "%b%d", time.localtime(started)),
        tty=_tty(tty_nr),
        time=f"{cpu_seconds // 3600:02d}:{cpu_seconds // 60 % 60:02d}:{cpu_seconds % 60:02d}",
        cmd=" ".join(argv) if argv else f"[{comm}]")


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _tty(tty_nr: int) -> str:
    if not tty_nr:
        return "?"
    major, minor = os.major(tty_nr), os.minor(tty_nr)
    if 136 <= major <= 143:  # Unix98 pseudo-terminals
        return f"pts/{(major - 136) * 256 + minor}"
    return f"{major}:{minor}"
