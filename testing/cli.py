"""Drive the ``pydock`` CLI from tests, and check the host for leftover mounts and cgroups.

For pydock's own tests and for a driver author's: run containers through the command a
user types, with a storage root of the test's own, and assert that nothing stays mounted
and no container's cgroup survives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydock.core.errors import EXIT_PYDOCK_ERROR

PYDOCK = str(Path(sys.executable).with_name("pydock"))
TIMEOUT = 60


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path`` in this process's mount namespace."""
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            mount_point = line.split()[4].encode().decode("unicode_escape")
            if mount_point == prefix or mount_point.startswith(prefix + "/"):
                found.append(mount_point)
    return found


def processes_using(path: Path) -> list[int]:
    """Pids of the processes with a mount of something at or below ``path`` in their mount
    namespace: a container whose root comes from there (an overlay's upper directory, a
    bind mount's source), wherever its own mounts are. None may outlive ``rm -f``."""
    needle = str(path).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/mountinfo", "rb") as f:
                if needle in f.read():
                    found.append(int(entry))
        except OSError:  # ended meanwhile, or a kernel thread
            continue
    return found


def cgroup_hierarchies() -> dict[str, Path]:
    """Where each cgroup controller's hierarchy is mounted ("memory": /sys/fs/cgroup/memory),
    whether cgroup v1 or v2 has it. The keys of a v1 mount are all its options, so names
    like "rw" come along; only controllers are looked up."""
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype, _, options = fields[fields.index("-") + 1:][:3]
            mount = Path(fields[4])
            if fstype == "cgroup":
                controllers = options.split(",")
            elif fstype == "cgroup2":
                controllers = (mount / "cgroup.controllers").read_text().split()
            else:
                continue
            for controller in controllers:
                found.setdefault(controller, mount)
    return found


def container_cgroups(root: Path) -> list[Path]:
    """The cgroups of containers in storage root ``root`` (``<hierarchy>/pydock/<key>-<id>``;
    see pydock.core.runtime.cgroups.cgroup_name): those of other roots on this host are not ours."""
    from pydock.core.runtime.cgroups import cgroup_name

    prefix = cgroup_name(root, "0" * 64).removesuffix("0" * 64)
    return sorted(path for mount in cgroup_mounts()
                  for path in (mount / "pydock").glob(f"{prefix}*") if path.is_dir())


def cgroup_mounts() -> set[Path]:
    """Where every cgroup hierarchy is mounted, v1 and v2, with or without controllers
    (a hybrid host's ``unified`` has none): every container has a cgroup in each."""
    with open("/proc/self/mountinfo") as f:
        return {Path(fields[4]) for fields in map(str.split, f)
                if fields[fields.index("-") + 1] in ("cgroup", "cgroup2")}


@dataclass
class Pydock:
    """Runs the ``pydock`` CLI against one storage root.

    ``run --image`` of a missing image pulls it from its registry (docker.io for a short
    name), so tests run with ``PYDOCK_PULL_POLICY=never``: a test reaches no registry it did
    not start itself, and a missing image stays "no such image". A test of pulling passes
    ``env={"PYDOCK_PULL_POLICY": "missing"}``."""

    root: Path
    # Containers run on --network none unless a test asks for another: a test's bridge is
    # made private to its root (tests/conftest.py's bridge fixture), never the user's. And a
    # missing image is not pulled: a test reaches no registry it did not start.
    env: dict[str, str] = field(default_factory=lambda: {
        "PATH": os.environ["PATH"], "PYDOCK_DEFAULT_NETWORK": "none",
        "PYDOCK_PULL_POLICY": "never"})

    def __call__(self, *args: str, input: str | None = None, timeout: float = TIMEOUT,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PYDOCK, "--root", str(self.root), *args], input=input,
                              capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})},
                              stdin=None if input is not None else subprocess.DEVNULL)

    def ok(self, *args: str, input: str | None = None) -> str:
        """Run, insist on exit status 0, return stdout."""
        result = self(*args, input=input)
        assert result.returncode == 0, (
            f"pydock {' '.join(args)} exited {result.returncode}\n"
            f"stdout: {result.stdout}\nstderr: {result.stderr}")
        return result.stdout

    def refused(self, *args: str, code: int = EXIT_PYDOCK_ERROR, match: str | None = None,
                input: str | None = None, env: dict[str, str] | None = None) -> str:
        """Run, insist that pydock refused: exit status ``code`` (125, pydock's own errors, by
        default), exactly one line on stderr starting ``pydock: `` and holding ``match`` if
        given, no traceback and no internal error. Returns the message, without the prefix."""
        result = self(*args, input=input, env=env)
        shown = (f"pydock {' '.join(args)} exited {result.returncode}\n"
                 f"stdout: {result.stdout}\nstderr: {result.stderr}")
        assert result.returncode == code, shown
        assert result.stderr.startswith("pydock: ") and result.stderr.endswith("\n"), shown
        assert result.stderr.count("\n") == 1, shown
        assert "Traceback" not in result.stderr and "internal error" not in result.stderr, shown
        message = result.stderr.removeprefix("pydock: ").removesuffix("\n")
        assert match is None or match in message, f"{match!r} not in the message\n{shown}"
        return message

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen([PYDOCK, "--root", str(self.root), *args], text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)

    def inspect(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.ok("inspect", name))[0]
        return result

    def wait_running(self, name: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self("inspect", name)
            if result.returncode == 0:
                info: dict[str, Any] = json.loads(result.stdout)[0]
                if info["State"]["Running"]:
                    return info
            time.sleep(0.05)
        raise AssertionError(f"container {name} did not start within {timeout}s")

    def container_names(self) -> list[str]:
        """Every container's name, sorted (``ps`` lists the newest first)."""
        return sorted(row["Names"] for row in json.loads(self.ok("ps", "-a", "--format", "json")))
