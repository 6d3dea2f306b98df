"""Progress on a terminal for long work: reads (image import, load, save) and steps (bench)."""

from __future__ import annotations

import io
import os
import sys
import time
from typing import IO


class ProgressReader(io.RawIOBase):
    """Reads through ``stream`` and redraws one status line on stderr when it is a terminal.

    Progress is the position in the file under ``stream`` (``stream.fileno()``), so it is
    right for compressed files too: gzip, lzma and bz2 streams report their file's
    descriptor. Off a terminal it only reads: logs and pipes get no carriage returns.
    """

    def __init__(self, stream: IO[bytes], label: str) -> None:
        self._stream = stream
        self._label = label
        self._enabled = sys.stderr.isatty()
        self._fd = stream.fileno()
        self._total = max(os.fstat(self._fd).st_size, 1)
        self._shown = 0.0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._stream.read(len(buffer))
        buffer[: len(data)] = data
        if self._enabled and time.monotonic() - self._shown > 0.1:
            self._shown = time.monotonic()
            self._draw(os.lseek(self._fd, 0, os.SEEK_CUR))
        return len(data)

    def close(self) -> None:
        if self._enabled and not self.closed:
            self._draw(self._total)
            sys.stderr.write("\n")
        self._stream.close()
        super().close()

    def _draw(self, done: int) -> None:
        percent = min(100, done * 100 // self._total)
        sys.stderr.write(f"\r{self._label}: {percent:3d}% "
                         f"{min(done, self._total) / 1e6:.1f}/{self._total / 1e6:.1f} MB")
        sys.stderr.flush()


class StatusLine:
    """One status line on stderr, redrawn in place, when stderr is a terminal.

    For work made of steps rather than one read. Off a terminal it shows nothing, as
    :class:`ProgressReader`. :meth:`show` redraws at most every 0.1 s so that a loop of
    quick steps costs no terminal writes worth measuring, unless ``now`` is set.
    """

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self._width = 0
        self._shown = 0.0

    def show(self, text: str, now: bool = False) -> None:
        if not self.enabled or (not now and time.monotonic() - self._shown < 0.1):
            return
        self._shown = time.monotonic()
        # Longer than the terminal, the line would wrap and "\r" could not redraw it. The
        # terminal is stderr's: stdout is often a pipe or a file while this shows.
        try:
            columns = os.get_terminal_size(sys.stderr.fileno()).columns
        except OSError:
            columns = 0
        text = text[: (columns or 80) - 1]
        sys.stderr.write("\r" + text.ljust(self._width))
        sys.stderr.flush()
        self._width = len(text)

    def clear(self) -> None:
        """Erase the line, before other output or when the work is done."""
        if self.enabled and self._width:
            sys.stderr.write("\r" + " " * self._width + "\r")
            sys.stderr.flush()
            self._width = 0
