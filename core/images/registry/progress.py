"""Progress of blobs moving at once: one line per blob on a terminal, a summary line otherwise.

On a terminal (stderr), every blob has its line (``<digest 12>: downloading 12.3/40.1 MB``),
redrawn in place at most ten times a second from whichever thread moved it. Off a terminal
nothing is drawn while the work goes on (logs get no carriage returns), and
:meth:`Progress.summary` is one line at the end.
"""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, verb: str) -> None:
        self.enabled = sys.stderr.isatty()
        self._verb = verb
        self._lock = threading.Lock()
        self._lines: dict[str, str] = {}
        self._drawn = 0
        self._shown = 0.0
        self._start = time.monotonic()
        self.moved = 0  # bytes transferred
        self.skipped = 0  # blobs the other side already had
        self.done = 0

    def line(self, key: str, text: str, now: bool = False) -> None:
        with self._lock:
            self._lines[key] = f"{key.removeprefix('sha256:')[:12]}: {text}"
            if self.enabled and (now or time.monotonic() - self._shown > 0.1):
                self._draw()

    def advance(self, key: str, done: int, total: int) -> None:
        self.line(key, f"{self._verb} {done / 1e6:.1f}/{total / 1e6:.1f} MB")

    def add(self, size: int) -> None:
        with self._lock:
            self.moved += size

    def finish(self) -> None:
        with self._lock:
            if self.enabled:
                self._draw()

    def summary(self, what: str, blobs: int) -> str:
        seconds = time.monotonic() - self._start
        return (f"{what}: {blobs} layers, {self.skipped} already there, "
                f"{self.moved / 1e6:.1f} MB in {seconds:.1f} s")

    def _draw(self) -> None:
        self._shown = time.monotonic()
        out = "\033[F" * self._drawn if self._drawn else ""
        lines = list(self._lines.values())
        out += "".join(f"\r{text}\033[K\n" for text in lines)
        sys.stderr.write(out)
        sys.stderr.flush()
        self._drawn = len(lines)
