"""The run path imports only what starting a container needs (``python -X importtime``).

Every module listed here is heavy or belongs to another command; importing one on the way
to a container's start is a start-up cost every ``pydock run`` would pay.

What the run path costs in milliseconds is measured by ``benchmarks/run_phases.py``, not
here (a timed test flakes on a busy machine). This test holds what decides that cost and
does not flake: which of pydock's own modules the run imports, each costing a few tenths
of a millisecond. A module added to the list below is a choice to make with the benchmark
in hand, not by accident.
"""

from __future__ import annotations

import subprocess
import sys

from netfixtures import PrivateBridge

from pydock.testing.cli import Pydock

NOT_ON_THE_RUN_PATH = (
    "importlib.metadata",  # entry-point scanning: only for drivers that are not built in
    "tarfile", "xattr", "concurrent.futures", "subprocess",
    # Each a few milliseconds, with what they import in turn (shutil loads bz2 and lzma):
    "hashlib", "secrets", "random", "shutil", "socket",
    # Builds each class by compiling its methods: most of a millisecond per class.
    "dataclasses",
    "pydock.core.layers.unpack", "pydock.core.layers.pack", "pydock.core.layers.flatten",
    "pydock.core.layers.compression", "pydock.core.layers.treecopy",
    "pydock.core.images.default", "pydock.core.images.load", "pydock.core.images.save",
    "pydock.core.images.archive_files",
    "pydock.core.images.rootfs_tarball",
    "pydock.core.containers.commit", "pydock.core.layers.changes", "pydock.core.cli.views",
    # The registry client: only pull, push, login, and a run whose image is missing.
    "httpx", "zstandard", "pydock.core.images.blobs", "pydock.core.images.registry.client",
    "pydock.core.images.registry.pull",
    # The bridge network: pyroute2 alone takes over a hundred milliseconds.
    "pyroute2", "pydock.core.containers.network", "pydock.core.runtime.bridge",
    "pydock.core.runtime.nft",
)
# Every pydock module `pydock run --rm true` imports on the default driver, packages included.
RUN_PATH = frozenset({
    "pydock", "pydock.core", "pydock.core.errors", "pydock.core.failpoints",
    "pydock.core.files", "pydock.core.ids", "pydock.core.leftovers", "pydock.core.processes",
    "pydock.core.storage_root", "pydock.core.syscalls",
    "pydock.core.driver", "pydock.core.hookspecs", "pydock.core.plugins",
    "pydock.drivers", "pydock.drivers.bind", "pydock.drivers.copy", "pydock.drivers.overlay",
    "pydock.core.layers", "pydock.core.layers.format",
    "pydock.core.images", "pydock.core.images.store",
    "pydock.core.runtime", "pydock.core.runtime.capabilities", "pydock.core.runtime.entry",
    # Every container has a cgroup (and a cgroup namespace) and a device allowlist.
    "pydock.core.runtime.cgroups", "pydock.core.runtime.devices",
    # Every container gets its /etc/hostname, /etc/hosts and /etc/resolv.conf.
    "pydock.core.runtime.etcfiles",
    "pydock.core.runtime.gate", "pydock.core.runtime.inroot", "pydock.core.runtime.logs",
    # In the container's process, which reads libseccomp's version for the filter cache's
    # key (its -X importtime lines come out on the same stderr).
    "pydock.core.runtime.libseccomp",
    "pydock.core.runtime.monitor", "pydock.core.runtime.relay",
    "pydock.core.runtime.rootfs", "pydock.core.runtime.sealed_exec",
    "pydock.core.runtime.seccomp", "pydock.core.runtime.security_opts",
    "pydock.core.runtime.spawn", "pydock.core.runtime.users", "pydock.core.runtime.volumes",
    "pydock.core.containers", "pydock.core.containers.attach",
    "pydock.core.containers.lifecycle", "pydock.core.containers.liveness",
    "pydock.core.containers.spec", "pydock.core.containers.state",
    "pydock.core.containers.store",
    "pydock.core.cli", "pydock.core.cli.common", "pydock.core.cli.run",
})
def test_only_a_run_on_the_bridge_imports_the_bridge_s_modules(
        pydock: Pydock, bridge: PrivateBridge) -> None:
    modules = imported_by(pydock, "run", "--rm", "--network", "bridge", "true")
    bridge_path = {"pyroute2", "pydock.core.containers.network", "pydock.core.runtime.bridge",
                   "pydock.core.runtime.nft"}
    assert bridge_path <= modules
    assert sorted(modules & (set(NOT_ON_THE_RUN_PATH) - bridge_path - {
        "subprocess", "shutil", "socket", "random", "secrets", "hashlib",
        "concurrent.futures", "dataclasses"})) == []


def imported_by(pydock: Pydock, *args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pydock.core.cli.main",
                             "--root", str(pydock.root), *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {line.split("|")[2].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_run_on_the_default_driver_imports_nothing_heavy(pydock: Pydock) -> None:
    modules = imported_by(pydock, "run", "--rm", "--network", "none", "true")
    assert "pydock.core.runtime.spawn" in modules  # the check itself sees the run path
    assert sorted(modules & set(NOT_ON_THE_RUN_PATH)) == []


def test_run_imports_exactly_the_run_paths_own_modules(pydock: Pydock) -> None:
    modules = {name for name in imported_by(pydock, "run", "--rm", "--network", "none", "true")
               if name.split(".")[0] == "pydock"}
    added, gone = sorted(modules - RUN_PATH), sorted(RUN_PATH - modules)
    assert (added, gone) == ([], []), (
        f"pydock run now imports {added} and no longer {gone}: measure the run path with "
        "benchmarks/run_phases.py, import what only some runs need inside the function "
        "that needs it, and update RUN_PATH")


def test_run_of_a_named_local_image_imports_no_registry_code(pydock: Pydock) -> None:
    pydock.ok("tag", "pydock/default", "docker.io/library/local:1")
    modules = imported_by(pydock, "run", "--rm", "--image", "local:1", "true")
    assert "pydock.core.runtime.spawn" in modules
    assert sorted(modules & set(NOT_ON_THE_RUN_PATH)) == []
