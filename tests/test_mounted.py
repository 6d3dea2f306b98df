"""in_container_root: the forked child lives and dies inside the call, whatever the parent does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The parent is interrupted while the child's task still runs, so the child's reply meets a
# closed pipe. Each process that reaches the caller's except block prints its pid there.
INTERRUPTED_CALLER = textwrap.dedent("""
    import os, signal, sys, time
    from pydock.core.driver import Mount
    from pydock.core.runtime.mounted import in_container_root

    def slow_task(rootfs):
        time.sleep(0.5)
        return "done"

    def interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        in_container_root(sys.argv[1], [Mount("tmpfs", "tmpfs")], slow_task)
    except BaseException:
        print(os.getpid(), flush=True)
    time.sleep(1)  # long enough for the child to finish its task and reply
""")


@pytest.mark.quick
@pytest.mark.needs_root
def test_the_child_never_returns_into_the_callers_code(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_CALLER, str(rootfs)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) == 1, f"more than one process ran the except block: " \
                                            f"{result.stdout!r}"
    assert "Traceback" not in result.stderr
