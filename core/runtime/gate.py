"""The gate a container's first process waits at until its monitor has recorded its pid.

Between the fork and the record of its pid, a monitor killed would leave a container
running that no record names: nothing could find it to kill it, its cgroup could not be
removed, its storage would be deleted from under it. So the new process, first thing
after the fork, waits on a pipe: the monitor writes one byte once the pid is on record.
If the monitor dies first, the pipe reads as closed (the process holds no write end of
its own), and the process exits before it has done anything.
"""

from __future__ import annotations

import os

from pydock.core.errors import EXIT_PYDOCK_ERROR


class Gate:
    def __init__(self) -> None:
        self._read, self._write = os.pipe2(os.O_CLOEXEC)

    def wait(self) -> None:
        """In the forked process: return once let through; exit if the monitor died."""
        os.close(self._write)
        if os.read(self._read, 1) != b"1":
            os._exit(EXIT_PYDOCK_ERROR)
        os.close(self._read)

    def forked(self) -> None:
        """In the monitor, after the fork: only the new process reads the pipe."""
        os.close(self._read)

    def open(self) -> None:
        """In the monitor, once the pid is on record: let the process go on."""
        try:
            os.write(self._write, b"1")
        except BrokenPipeError:
            pass  # it failed before it reached the gate, and reports why as always
        finally:
            os.close(self._write)
