"""A container's log: its stdout and stderr, in the order the monitor read them.

The file is a sequence of frames, each a 5-byte header (the stream; then the payload's
length, big-endian), the time the monitor read the bytes (8 bytes, nanoseconds since the
epoch, big-endian) when the stream has the :data:`TIMED` bit, and the bytes as the
container wrote them. Binary-safe and cheap to append, and a reader can tell the streams
apart and stop at a frame the monitor has not finished writing. Frames without a time
(stream 1 or 2 alone) are what logs written before timestamps were kept hold; they read
with time 0.

The time costs one clock read per chunk the monitor relays (a vDSO call, no syscall) and
8 bytes in the frame's one write; ``benchmarks/compare_stdio.py`` measures the relay.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

STDOUT, STDERR = 1, 2
TIMED = 0x10  # the frame carries the time its bytes were read
_HEADER = struct.Struct(">BI")
_TIME = struct.Struct(">Q")
_TIMED_HEADER = struct.Struct(">BIQ")  # the header and the time, packed at once
FOLLOW_POLL_SECONDS = 0.05


class Entry(NamedTuple):
    stream: int  # STDOUT or STDERR
    time_ns: int  # when the monitor read it; 0 if the log predates timestamps
    data: bytes


class LogWriter:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)

    def write(self, stream: int, data: bytes) -> None:
        # One write per frame: with O_APPEND, a reader never sees a frame's parts apart.
        os.write(self.fd, _TIMED_HEADER.pack(stream | TIMED, len(data), time.time_ns()) + data)

    def close(self) -> None:
        os.close(self.fd)


def read_entries(path: str, follow: bool = False,
                 still_running: Callable[[], bool] = lambda: False) -> Iterator[Entry]:
    """The entries of the log at ``path``, one per frame.

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
                    start = _HEADER.size + (_TIME.size if stream & TIMED else 0)
                    if len(pending) < start + length:
                        break  # the rest of this frame is still being written
                    stamp = _TIME.unpack_from(pending, _HEADER.size)[0] if stream & TIMED else 0
                    yield Entry(stream & ~TIMED, stamp, pending[start:start + length])
                    pending = pending[start + length:]
            if not waiting:
                return
            time.sleep(FOLLOW_POLL_SECONDS)


def lines(entries: Iterator[Entry]) -> Iterator[Entry]:
    """The entries cut into lines, as ``logs --tail`` and ``-t`` count and stamp them: a
    line the container wrote in several chunks is one line, with its first chunk's time
    (a partial line is held back only until the same stream writes again or the log ends)."""
    partial: dict[int, Entry] = {}
    for entry in entries:
        data = entry.data
        if entry.stream in partial:
            held = partial.pop(entry.stream)
            entry = Entry(entry.stream, held.time_ns, held.data + data)
            data = entry.data
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            yield Entry(entry.stream, entry.time_ns, data[start:end + 1])
            start = end + 1
        if start < len(data):
            partial[entry.stream] = Entry(entry.stream, entry.time_ns, data[start:])
    yield from partial.values()
