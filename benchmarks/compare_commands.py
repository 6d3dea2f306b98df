"""compare.py's commands: untimed set-up and clean-up, the timed runs, progress notes.

A command that fails raises CommandFailed with the command line and the last line of its
stderr, which is what the report shows.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable


class CommandFailed(Exception):
    """A command exited with a non-zero status; the message says which and why."""


def run(argv: list[str]) -> str:
    """Run an untimed set-up or clean-up command; its standard output."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(_failure(argv, result.returncode, result.stderr))
    return result.stdout


def time_command(argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its exit. Only stderr is kept, for the error."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise CommandFailed(_failure(argv, result.returncode, stderr))
    return elapsed


def _failure(argv: list[str], code: int, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return f"`{' '.join(argv)}` exited {code}: {lines[-1] if lines else 'no message'}"


def note(message: str) -> None:
    """Progress, on stderr so that stdout holds only the report."""
    print(f"compare: {message}", file=sys.stderr, flush=True)


def version(argv: list[str]) -> str:
    try:
        return run(argv).splitlines()[0].strip()
    except (CommandFailed, IndexError):
        return "version unknown"


def same_every_run(argv: list[str]) -> Callable[[int], list[str]]:
    return lambda _i: argv
