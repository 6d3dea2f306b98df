"""The run path imports only what starting a container needs (``python -X importtime``).

Every module listed here is heavy or belongs to another command; importing one on the way
to a container's start is a start-up cost every ``pydock run`` would pay.
"""

from __future__ import annotations

import subprocess
import sys

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
    "pydock.core.runtime.cgroups",  # only for containers with resource limits
)


def imported_by(pydock: Pydock, *args: str) -> set[str]:
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "pydock.core.cli.main",
                             "--root", str(pydock.root), *args], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {line.split("|")[2].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def test_run_on_the_default_driver_imports_nothing_heavy(pydock: Pydock) -> None:
    modules = imported_by(pydock, "run", "--rm", "true")
    assert "pydock.core.runtime.spawn" in modules  # the check itself sees the run path
    assert sorted(modules & set(NOT_ON_THE_RUN_PATH)) == []
