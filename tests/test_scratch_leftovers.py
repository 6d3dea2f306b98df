"""Scratch names in the storage root (pydock.core.leftovers): what a command killed midway
leaves under one, ``prune`` removes once its owner is gone, and the root is then exactly as
it was before the command; a live owner's scratch survives prune; and a leftover that cannot
be removed never fails prune.

The crashes are real, as in test_crash_safety: ``PYDOCK_FAILPOINT`` makes pydock SIGKILL
itself at the named step. Unlike there, the listing compared covers the whole root, the image
store included, with every file's mode and content.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from helpers import busybox_tarball

from pydock.core.processes import process_start_time
from pydock.testing.cli import Pydock


def manifest(root: Path) -> list[tuple[str, int, str]]:
    """Every path under ``root`` with its mode and its content (a file's digest, a link's
    target)."""
    entries = []
    for path in root.rglob("*"):
        st = path.lstat()
        if path.is_symlink():
            content = os.readlink(path)
        elif path.is_file():
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = ""
        entries.append((str(path.relative_to(root)), st.st_mode, content))
    return sorted(entries)


def hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def crash(pydock: Pydock, step: str, *args: str) -> None:
    result = pydock(*args, env={"PYDOCK_FAILPOINT": step})
    assert result.returncode == -signal.SIGKILL, (result.returncode, result.stderr)


def prune_restores(pydock: Pydock, before: list[tuple[str, int, str]], left: str) -> None:
    """The crash left a scratch entry whose name starts with ``left``; prune removes it and
    nothing else."""
    assert any(Path(name).name.startswith(left) for name in hidden(pydock.root)), \
        hidden(pydock.root)
    assert pydock.ok("prune") == ""
    assert manifest(pydock.root) == before


def running_with_a_change(pydock: Pydock, driver: str) -> None:
    pydock.ok("run", "-d", "--name", "src", "--storage", driver,
              "sh", "-c", "echo changed > /new && exec sleep 60")
    deadline = time.monotonic() + 20
    while "/new" not in pydock.ok("diff", "src"):
        assert time.monotonic() < deadline, "the container never wrote /new"
        time.sleep(0.05)


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_commit_killed_in_its_scratch_directory(pydock: Pydock, driver: str) -> None:
    running_with_a_change(pydock, driver)
    before = manifest(pydock.root)
    crash(pydock, "commit.layer-written", "commit", "src", "snap")
    prune_restores(pydock, before, ".commit-")
    assert pydock.ok("rm", "-f", "src") == "src\n"


def test_record_creation_killed_before_its_record_is_renamed(pydock: Pydock) -> None:
    pydock.ok("run", "--rm", "true")
    before = manifest(pydock.root)
    crash(pydock, "write.before-rename", "run", "--name", "victim", "true")
    prune_restores(pydock, before, ".new-")


def test_image_rm_killed_before_its_names_are_replaced(pydock: Pydock,
                                                       tmp_path: Path) -> None:
    pydock.ok("image", "import", str(busybox_tarball(tmp_path, "image.tar")), "doomed")
    before = manifest(pydock.root)
    crash(pydock, "write.before-rename", "image", "rm", "doomed")
    assert pydock.ok("image", "inspect", "doomed")
    prune_restores(pydock, before, ".new-")


# Each place a scratch entry can be left (leftovers.py's table), with whether it is a
# directory there.
SCRATCH_PLACES = {
    ".commit-": True, ".tmp-": False, "containers/.new-": True, "containers/.rm-": True,
    "containers/src/.new-": False, "images/.new-": False, "images/configs/.new-": False,
    "layers/.tmp-": True, "layers/.rm-": True, "bench/.storage-": True, "bench/.rm-": True,
    "blobs/.tmp-": False, "images/manifests/.new-": False,
}


def test_prune_sweeps_every_scratch_place_once_its_owner_is_gone(pydock: Pydock) -> None:
    running_with_a_change(pydock, "overlay")
    (pydock.root / "bench").mkdir(mode=0o700)  # as a bench leaves it
    before = manifest(pydock.root)
    start = process_start_time(os.getpid())
    alive = [pydock.root / f"{place}{os.getpid()}-{start}-0123456789abcdef"
             for place in SCRATCH_PLACES]
    dead = [pydock.root / f"{place}{os.getpid()}-{start + 1}-0123456789abcdef"
            for place in SCRATCH_PLACES]
    for paths in (alive, dead):
        for path, is_dir in zip(paths, SCRATCH_PLACES.values(), strict=True):
            if is_dir:
                (path / "sub").mkdir(parents=True)
                (path / "sub" / "file").write_text("x")
            else:
                path.write_text("x")
    assert pydock.ok("prune") == ""
    assert [p for p in alive + dead if p.exists()] == alive
    for path in alive:
        subprocess.run(["rm", "-r", str(path)], check=True)
    assert manifest(pydock.root) == before
    assert pydock.ok("rm", "-f", "src") == "src\n"


def test_a_removal_leftover_that_cannot_be_removed_never_fails_prune(pydock: Pydock) -> None:
    pydock.ok("run", "--rm", "true")
    before = manifest(pydock.root)
    gone = f"{os.getpid()}-{process_start_time(os.getpid()) + 1}-0123456789abcdef"
    busy = pydock.root / "containers" / f".rm-{gone}"
    (busy / "mounted").mkdir(parents=True)
    # A file where a directory was expected, and a mount point rmdir refuses (EBUSY).
    (pydock.root / "layers" / f".rm-{gone}").write_text("x")
    subprocess.run(["mount", "-t", "tmpfs", "leftover", str(busy / "mounted")], check=True)
    try:
        result = pydock("prune")
        assert (result.returncode, result.stdout) == (0, ""), result.stderr
        assert "Traceback" not in result.stderr
        assert "pydock: warning: cannot remove" in result.stderr
        assert str(busy) in result.stderr
        assert not (pydock.root / "layers" / f".rm-{gone}").exists()
    finally:
        subprocess.run(["umount", "--lazy", str(next(
            (pydock.root / "containers").glob(".rm-*/mounted")))], check=True)
    # The leftover waits, under the name of the prune that gave up on it, for the next one.
    assert pydock.ok("prune") == ""
    assert manifest(pydock.root) == before
