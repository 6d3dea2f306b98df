"""compare.py's workspace: the clean-up actions, and removing the directory safely.

Everything compare.py creates lives in one temporary directory. The clean-up undoes what
was set up (containers of every tool), newest first, then unmounts what is left below the
directory and deletes it, never through a mount.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from compare_commands import CommandFailed, note


class Cleanup:
    """Undo actions, run newest first; each runs whatever happened to the others."""

    def __init__(self) -> None:
        self._actions: list[tuple[str, Callable[[], None]]] = []

    def add(self, what: str, action: Callable[[], None]) -> None:
        self._actions.append((what, action))

    def run(self) -> None:
        while self._actions:
            what, action = self._actions.pop()
            try:
                action()
            except Exception as exc:
                note(f"cleanup: {what} failed: {exc}")


def mounts_below(path: Path) -> list[str]:
    """Mount points under ``path`` in our mount namespace, deepest first."""
    inside: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), line.split()[4])
            if point.startswith(f"{path}/"):
                inside.append(point)
    return sorted(inside, key=len, reverse=True)


def remove_workspace(path: Path) -> None:
    """Unmount what is left under ``path``, then delete it; never delete through a mount."""
    for point in mounts_below(path):
        subprocess.run(["umount", "--lazy", point], stderr=subprocess.DEVNULL, check=False)
    if left := mounts_below(path):
        note(f"cleanup: {path} kept, still mounted: {', '.join(left)}")
        return
    shutil.rmtree(path, ignore_errors=True)


def run_then_clean_up(body: Callable[[], str], cleanup: Cleanup) -> int:
    """Print what ``body`` reports and return 0; 1 if a command failed, 130 on Ctrl-C or
    SIGTERM; the clean-up runs whatever happened, and a second Ctrl-C cannot cut it short."""
    signal.signal(signal.SIGTERM, interrupted)
    try:
        print(body())
        return 0
    except CommandFailed as exc:
        note(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("cleaning up")
        cleanup.run()


def interrupted(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C does, through the clean-up.
    raise KeyboardInterrupt(f"signal {signum}")
