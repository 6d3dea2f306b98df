"""Every container in a cgroup of its own, behind a cgroup namespace rooted there
(pydock.core.runtime.cgroups), for ``run`` and ``exec`` alike.

The attack: with default flags, a container unshares a user, mount and cgroup namespace
(which gives it CAP_SYS_ADMIN over them), mounts cgroup2 and writes ``cgroup.kill`` of a
host cgroup: a host process outside its PID namespace dies. A host ``sleep`` in a cgroup
of its own plays the victim here, in the cgroup v2 hierarchy wherever the host mounts it
(``/sys/fs/cgroup`` on a pure v2 host, ``/sys/fs/cgroup/unified`` on a hybrid one).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from probes import import_probe_image

from pydock.core.runtime.cgroups import cgroup_name
from pydock.testing.cli import TIMEOUT, Pydock, container_cgroups


def cgroup_mounts() -> dict[str, Path]:
    """Every cgroup hierarchy's mount, by the name /proc/self/cgroup gives it ("" for v2)."""
    found: dict[str, Path] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype, _, options = fields[fields.index("-") + 1:][:3]
            if fstype == "cgroup2":
                found.setdefault("", Path(fields[4]))
            elif fstype == "cgroup":
                names = [o for o in options.split(",") if o not in ("rw", "ro")
                         and (o.startswith("name=") or "=" not in o)]
                found.setdefault(",".join(names), Path(fields[4]))
    return found


MOUNTS = cgroup_mounts()
V2 = pytest.mark.skipif("" not in MOUNTS, reason="this host has no cgroup v2 hierarchy")


class HostCgroup(NamedTuple):
    name: str  # below the v2 hierarchy's root
    victim: subprocess.Popen[bytes]


@pytest.fixture
def host_cgroup() -> Iterator[HostCgroup]:
    """A host cgroup in the v2 hierarchy holding a host ``sleep``; both gone afterwards."""
    name = f"pydock-test-victim-{os.getpid()}-{time.monotonic_ns()}"
    directory = MOUNTS[""] / name
    directory.mkdir()
    victim = subprocess.Popen(["sleep", "60"])
    try:
        (directory / "cgroup.procs").write_text(str(victim.pid))
        yield HostCgroup(name, victim)
    finally:
        victim.kill()
        victim.wait()
        directory.rmdir()


UNCONFINED = ("--security-opt", "seccomp=unconfined")


@pytest.fixture
def image(pydock: Pydock, tmp_path: Path) -> str:
    return import_probe_image(pydock, tmp_path, ["cgroupns", "devnode"])


def proc_cgroup_lines(text: str) -> list[tuple[str, str]]:
    """(hierarchy, path) of each line of a /proc/PID/cgroup."""
    return [(line.split(":", 2)[1], line.split(":", 2)[2]) for line in text.splitlines()]


@V2
def test_a_container_cannot_kill_a_host_cgroup_from_a_nested_user_namespace(
        pydock: Pydock, image: str, host_cgroup: HostCgroup) -> None:
    # Without the seccomp filter, which refuses the nested user namespace first: the
    # cgroup namespace must stop the attack on its own.
    result = pydock("run", "--rm", *UNCONFINED, "--image", image, "sh", "-c",
                    "mkdir /cg && /probes/cgroupns --userns kill /cg " + host_cgroup.name)
    assert result.returncode == 1, result.stderr
    assert "open: No such file or directory" in result.stderr
    time.sleep(0.1)  # cgroup.kill is asynchronous
    assert host_cgroup.victim.poll() is None, "the host's process was killed"
    # The hierarchy it mounted is its own subtree: no host cgroup in it.
    listing = pydock.ok("run", "--rm", *UNCONFINED, "--image", image, "sh", "-c",
                        "mkdir /cg && /probes/cgroupns --userns ls /cg").split()
    assert "cgroup.procs" in listing
    assert host_cgroup.name not in listing and "pydock" not in listing


@V2
def test_with_sys_admin_a_cgroup2_mount_shows_only_the_containers_subtree(
        pydock: Pydock, image: str, host_cgroup: HostCgroup) -> None:
    listing = pydock.ok("run", "--rm", "--image", image, "--cap-add", "SYS_ADMIN", "sh", "-c",
                        "mkdir /cg && /probes/cgroupns ls /cg").split()
    assert "cgroup.procs" in listing
    assert host_cgroup.name not in listing and "pydock" not in listing


def test_run_and_exec_see_only_their_own_cgroup_in_every_hierarchy(
        pydock: Pydock, image: str) -> None:
    inside = pydock.ok("run", "--rm", "--image", image, "cat", "/proc/self/cgroup")
    assert {path for _, path in proc_cgroup_lines(inside)} == {"/"}
    assert len(proc_cgroup_lines(inside)) == len(MOUNTS)

    pydock.ok("run", "-d", "--name", "held", "--image", image, "/probes/devnode", "pause")
    info = pydock.inspect("held")
    own = f"/pydock/{cgroup_name(pydock.root, info['Id'])}"
    # From the host: the container's process is in its own cgroup in every hierarchy.
    host_view = proc_cgroup_lines(Path(f"/proc/{info['State']['Pid']}/cgroup").read_text())
    assert {path for _, path in host_view} == {own}
    assert len(host_view) == len(MOUNTS)
    exec_view = pydock.ok("exec", "held", "cat", "/proc/self/cgroup")
    assert {path for _, path in proc_cgroup_lines(exec_view)} == {"/"}

    # An exec'd process joins the container's cgroup in every hierarchy.
    execd = pydock.popen("exec", "held", "/probes/devnode", "pause")
    try:
        directories = [mount / own.lstrip("/") for mount in MOUNTS.values()]
        deadline = time.monotonic() + TIMEOUT
        while len((directories[0] / "cgroup.procs").read_text().split()) < 2:
            assert execd.poll() is None and time.monotonic() < deadline, execd.communicate()
            time.sleep(0.02)
        for directory in directories:
            assert len((directory / "cgroup.procs").read_text().split()) == 2, directory
    finally:
        pydock.ok("rm", "-f", "held")
        execd.communicate(timeout=TIMEOUT)


@V2
def test_cgroups_a_container_makes_stay_in_its_own_and_go_with_it(
        pydock: Pydock, image: str) -> None:
    name = f"pydock-test-made-{os.getpid()}-{time.monotonic_ns()}"
    on_host = MOUNTS[""] / name
    try:
        pydock.ok("run", "--rm", "--image", image, "--cap-add", "SYS_ADMIN", "sh", "-c",
                  f"mkdir /cg && /probes/cgroupns ls /cg >/dev/null && "
                  f"mkdir -p /cg/{name}/deeper && echo $$ > /cg/{name}/deeper/cgroup.procs")
        assert not on_host.exists(), "the container made a cgroup in the host's tree"
        assert container_cgroups(pydock.root) == []
    finally:
        for leaked in (on_host / "deeper", on_host):
            if leaked.exists():
                leaked.rmdir()
