"""``run --init``: tini, bind mounted read-only, is PID 1 and reaps orphans."""

from __future__ import annotations

import time
from pathlib import Path

from pydock.testing.cli import Pydock

# An orphan that exits while PID 1 (`exec sleep`) never calls wait(): a zombie, unless an
# init reaps it.
ZOMBIE_MAKER = "sh -c 'sleep 0.2 &'; exec sleep 600"
ZOMBIES = "cat /proc/[0-9]*/stat | cut -d' ' -f3 | grep -c Z || true"


def zombies(pydock: Pydock, name: str) -> int:
    time.sleep(1)  # the orphan's sleep 0.2 has ended by then
    return int(pydock.ok("exec", name, "sh", "-c", ZOMBIES))


def test_init_reaps_the_zombies_a_command_leaves(pydock: Pydock, image: tuple[str, ...]) -> None:
    pydock.ok("run", "-d", "--name", "plain", *image, "sh", "-c", ZOMBIE_MAKER)
    assert zombies(pydock, "plain") == 1  # the script does make one
    pydock.ok("run", "-d", "--init", "--name", "reaped", *image, "sh", "-c", ZOMBIE_MAKER)
    assert zombies(pydock, "reaped") == 0
    assert pydock.ok("exec", "reaped", "cat", "/proc/1/cmdline").split("\0")[:3] == [
        "/sbin/docker-init", "--", "sh"]
    # The host's binary cannot be changed from inside (writing it is ETXTBSY while it
    # runs; the mount refuses even what a running binary allows).
    before = Path("/usr/bin/tini-static").stat()
    result = pydock("exec", "reaped", "chmod", "777", "/sbin/docker-init")
    assert result.returncode != 0 and "Read-only file system" in result.stderr
    assert Path("/usr/bin/tini-static").stat() == before
    assert pydock.inspect("reaped")["HostConfig"]["Init"] is True
    assert pydock.inspect("reaped")["Mounts"] == []
    pydock.ok("rm", "-f", "plain", "reaped")


def test_init_passes_the_exit_code_and_signals(pydock: Pydock, image: tuple[str, ...]) -> None:
    result = pydock("run", "--rm", "--init", "--read-only", *image, "sh", "-c", "exit 42")
    assert result.returncode == 42, result.stderr
    # PID 1 ignores SIGTERM it has no handler for; under init, the command is not PID 1.
    pydock.ok("run", "-d", "--init", "--name", "box", *image, "sleep", "600")
    started = time.monotonic()
    pydock.ok("stop", "-t", "20", "box")
    assert time.monotonic() - started < 10
    assert pydock.inspect("box")["State"]["ExitCode"] == 143
