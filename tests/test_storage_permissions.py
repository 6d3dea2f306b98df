"""The storage root keeps unprivileged host users out (pydock.core.storage_root).

Below the root lie the containers' files and the images' layers, setuid-root binaries
included: a host user who could reach one could run it as root. The tests build a full
tree the way a user does, through the CLI (containers on every driver, an imported image
with a setuid-root binary), then look at it as ``nobody``.

pytest's temporary directories sit below a directory only root may enter, which would
hide the storage root from ``nobody`` whatever its own mode. So the probe starts from a
descriptor of the test's directory, opened before it drops root, as if the storage root
lay in a directory anyone may pass through (as /var/lib/pydock does).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
from helpers import DRIVERS, SETUID_ID, import_setuid_image

from pydock.core.storage_root import TOP_LEVEL
from pydock.testing.cli import Pydock

NOBODY = 65534
# The trees that are an image's or a container's files, whose modes the image gave them
# (or the kernel: overlay's work directory). Everything else is pydock's own.
CONTENT = [("layers", "*", "diff"), ("storage", "overlay", "*", "upper"),
           ("storage", "overlay", "*", "work", "*"), ("storage", "copy", "*", "rootfs"),
           ("storage", "bind", "shared", "*", "rootfs")]


def is_content(relative: tuple[str, ...]) -> bool:
    return any(len(relative) == len(pattern) and all(map(fnmatch, relative, pattern))
               for pattern in CONTENT)


def own_directories(root: Path) -> Iterator[Path]:
    """The storage root and every directory pydock made in it, content trees left out."""
    yield root
    for top, dirs, _files in os.walk(root):
        for name in list(dirs):
            path = Path(top, name)
            if is_content(path.relative_to(root).parts):
                dirs.remove(name)
            else:
                yield path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def as_nobody(start: Path, probe: Callable[[str], dict[str, str]]) -> dict[str, str]:
    """Run ``probe`` in a child that is ``nobody`` with no groups; it gets the path of
    ``start`` as a /proc/self/fd link and returns {what: outcome}."""
    start_fd = os.open(start, os.O_PATH | os.O_DIRECTORY)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.write(write_end, json.dumps(probe(f"/proc/self/fd/{start_fd}")).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    os.close(start_fd)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    os.waitpid(pid, 0)
    assert report, "the probe failed"
    result: dict[str, str] = json.loads(report)
    return result


def outcome(action: Callable[[], object]) -> str:
    """"ok", or the errno name of the failure."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"


def run_setuid(path: str) -> object:
    # close_fds=False: ``path`` goes through the probe's descriptor, which the kernel
    # closes (close-on-exec) only once it has found the file.
    return subprocess.run([path, "-u"], capture_output=True, check=True, timeout=10,
                          close_fds=False)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(1)


@pytest.fixture
def full_tree(needs_root: None, tmp_path: Path) -> Iterator[Pydock]:
    """A storage root made from nothing by the CLI: the default image, an imported image
    with a setuid-root binary, and containers of it on every driver (one still running),
    each having written a secret."""
    pydock = Pydock(tmp_path / "root")
    image = import_setuid_image(pydock, tmp_path)
    for driver in DRIVERS:
        pydock.ok("run", "--storage", driver, "--name", f"done-{driver}", "--image", image,
                  "sh", "-c", "echo secret > /secret; echo secret > /tmp/secret")
    pydock.ok("run", "-d", "--name", "running", "--image", image, "sleep", "60")
    pydock.ok("run", "--rm", "true")  # the default image, built on first use
    yield pydock
    pydock.ok("rm", "-f", *pydock.container_names())


def test_pydocks_own_directories_are_private(full_tree: Pydock) -> None:
    root = full_tree.root
    checked = {path: mode(path) for path in own_directories(root) if not path.is_symlink()}
    assert {path: m for path, m in checked.items() if m != 0o700} == {}
    # The walk saw what the drivers and the image store made, not just the top.
    assert {root / name for name in TOP_LEVEL} <= set(checked)
    assert len(list(root.glob("storage/*/*"))) >= len(DRIVERS) + 1


def test_an_unprivileged_host_user_can_neither_read_nor_run_anything_in_it(
        full_tree: Pydock, tmp_path: Path) -> None:
    root = full_tree.root
    setuid_copies = [str(p.relative_to(tmp_path)) for p in root.glob(f"**{SETUID_ID}")]
    # The layer, the copy driver's copy, the bind driver's shared root (overlay reads
    # the layer's): every place a container's setuid binary lies on the host.
    assert len(setuid_copies) == 3, setuid_copies
    everything = [str(p.relative_to(tmp_path)) for p in root.rglob("*")]
    secrets = [str(p.relative_to(tmp_path)) for p in root.rglob("secret")]
    assert len(secrets) == 6  # two per driver (the overlay upper dir, the copies)
    # A control, outside the root: the same binary and a file nobody may use.
    public = tmp_path / "public"
    public.mkdir()
    shutil.copyfile(next(root.glob(f"**{SETUID_ID}")).resolve(), public / "id")
    os.chmod(public / "id", 0o755)
    os.chmod(tmp_path, 0o755)

    def probe(start: str) -> dict[str, str]:
        found = {"list root": outcome(lambda: os.listdir(f"{start}/root")),
                 "list control": outcome(lambda: os.listdir(start)),
                 "run control": outcome(lambda: run_setuid(f"{start}/public/id"))}
        for path in everything:
            found[f"stat {path}"] = outcome(lambda p=path: os.lstat(f"{start}/{p}"))
        for path in secrets:
            found[f"read {path}"] = outcome(lambda p=path: read(f"{start}/{p}"))
        for path in setuid_copies:
            found[f"run {path}"] = outcome(lambda p=path: run_setuid(f"{start}/{p}"))
        return found

    found = as_nobody(tmp_path, probe)
    assert found.pop("list control") == found.pop("run control") == "ok"
    assert {what for what, result in found.items() if result != "EACCES"} == set()
    assert len(found) == 1 + len(everything) + len(secrets) + len(setuid_copies)


def test_a_root_made_by_an_older_version_is_made_private(pydock: Pydock) -> None:
    # What older versions left: a traversable root, and images/ and storage/ open to all.
    for name, old_mode in (("", 0o711), ("images", 0o755), ("storage", 0o755)):
        os.chmod(pydock.root / name, old_mode)
    pydock.ok("run", "--rm", "true")
    assert {name: mode(pydock.root / name) for name in ("", *TOP_LEVEL)} == dict.fromkeys(
        ("", *TOP_LEVEL), 0o700)


def test_a_root_that_is_not_only_pydocks_keeps_its_mode(pydock: Pydock) -> None:
    # --root pointed at a directory that holds other things: those are not pydock's to
    # hide, and the directories pydock keeps there are private anyway.
    (pydock.root / "notes.txt").write_text("the user's\n")
    os.chmod(pydock.root, 0o755)
    pydock.ok("run", "--rm", "true")
    assert mode(pydock.root) == 0o755
    assert {mode(pydock.root / name) for name in TOP_LEVEL} == {0o700}
