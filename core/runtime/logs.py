"""A container's log: its stdout and stderr, in the order the monitor read them.

The file is a sequence of frames, each a 5-byte header (the stream: 1 for stdout, 2 for
stderr; then the payload's length, big-endian) and the bytes as the container wrote
them. Binary-safe and cheap to append, and a reader can tell the streams apart and
stop at a frame the monitor has not finished writing.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator

STDOUT, STDERR = 1, 2
_HEADER = struct.Struct(">BI")
FOLLOW_POLL_SECONDS = 0.05


class LogWriter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, stream: int, data: bytes) -> None:
        # One write per frame: with O_APPEND, a reader never sees a frame's parts apart.
        os.write(self.fd, _HEADER.pack(stream, len(data)) + data)

    def close(self) -> None:
        os.close(self.fd)


def read_frames(path: str, follow: bool = False,
                still_running: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, bytes]]:
    """The (stream, data) frames of the log at ``path``.

    With ``follow``, waits for new frames while ``still_running()``, and ends once the
    container has exited and everything it wrote has been read.
    """
    with open(path, "rb") as log:
        pending = b""
        while True:
            # Asked before reading: what the monitor wrote before it recorded the exit is
            # then still read in this pass.
            waiting = follow and still_running()
            while chunk := log.read(1 << 16):
                pending += chunk
                while len(pending) >= _HEADER.size:
                    stream, length = _HEADER.unpack_from(pending)
                    if len(pending) < _HEADER.size + length:
                        break  # the rest of this frame is still being written
                    yield stream, pending[_HEADER.size:_HEADER.size + length]
                    pending = pending[_HEADER.size + length:]
            if not waiting:
                return
            time.sleep(FOLLOW_POLL_SECONDS)
