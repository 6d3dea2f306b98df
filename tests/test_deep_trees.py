"""Trees deeper than Python's recursion limit and PATH_MAX: the shared walker, and what a
container or an image that holds one does to diff, commit, export, import, rm and prune.

10,000 levels of ``d`` make paths of 20,000 bytes, five times PATH_MAX, and would need
10,000 open descriptors if a walk held one per level. Containers and images get 5,000: paths
of 10,000 bytes, still past PATH_MAX and five times Python's recursion limit, at half the
minutes (every command of a container's life walks the whole tree, some of them twice).
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DRIVERS, busybox_rootfs, storage_listing

from pydock.core.driver import tree_usage
from pydock.core.files import WALK_WINDOW, DirCursor, TreeWalk, remove_tree
from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.tar import dir_, reg, tree, write_tar

DEPTH = 10_000
IN_CONTAINERS = 5_000


def make_chain(top: Path, depth: int = DEPTH) -> None:
    """``top/d/d/.../d`` ``depth`` levels deep, with a file ``f`` at every level."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A directory on tmpfs where there is one: ext4 takes half a minute to remove a
    10,000-level chain, whoever removes it (rm -rf too)."""
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    top = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="pydock-test-"))
    try:
        yield top
    finally:
        remove_tree(top)


@pytest.fixture
def chain(scratch: Path) -> Path:
    top = scratch / "chain"
    make_chain(top)
    return top


@pytest.mark.quick
def test_walk_reaches_every_level_in_order_with_few_descriptors(chain: Path) -> None:
    before = open_fds()
    top_fd = os.open(chain, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk = TreeWalk(top_fd)
        steps, most = [], 0
        for entry in walk:
            steps.append((walk.depth, entry.name, entry.leaving))
            if len(steps) % 97 == 0:
                most = max(most, open_fds() - before)
    finally:
        os.close(top_fd)
    assert open_fds() == before
    assert most <= WALK_WINDOW + 1
    # Pre-order down the chain (d before f), then each directory left after its file.
    assert steps[:3] == [(0, "d", False), (1, "d", False), (2, "d", False)]
    assert steps[DEPTH - 1:DEPTH + 2] == [(DEPTH - 1, "d", False), (DEPTH - 1, "d", True),
                                          (DEPTH - 1, "f", False)]
    assert steps[-2:] == [(0, "d", True), (0, "f", False)]
    assert len(steps) == 3 * DEPTH


@pytest.mark.quick
def test_walk_skips_what_it_is_told_to_and_follows_no_symlink(scratch: Path) -> None:
    tmp_path = scratch
    (tmp_path / "top" / "skipped").mkdir(parents=True)
    (tmp_path / "top" / "skipped" / "inside").touch()
    (tmp_path / "top" / "link").symlink_to("/etc")
    top_fd = os.open(tmp_path / "top", os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk = TreeWalk(top_fd)
        seen = []
        for entry in walk:
            seen.append((entry.name, entry.is_dir, entry.leaving))
            if entry.name == "skipped":
                walk.skip()
    finally:
        os.close(top_fd)
    assert seen == [("link", False, False), ("skipped", True, False)]


@pytest.mark.quick
def test_walk_stops_when_a_directory_it_closed_has_moved(scratch: Path) -> None:
    top = scratch / "top"
    make_chain(top, WALK_WINDOW * 2)
    top_fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        walk = TreeWalk(top_fd)
        with pytest.raises(OSError) as raised:
            for _entry in walk:
                if walk.depth == WALK_WINDOW * 2 - 1 and not (top / "moved").exists():
                    # Deep below, where the walk holds no descriptor of top/d any more,
                    # move top/d/d up: on the way back, its ".." is top, not top/d.
                    os.rename(top / "d" / "d", top / "moved")
    finally:
        os.close(top_fd)
    assert raised.value.errno == errno.ESTALE


@pytest.mark.quick
def test_remove_tree_and_usage_of_a_chain_deeper_than_path_max(chain: Path) -> None:
    usage = tree_usage(chain)
    assert usage.inodes == 2 * DEPTH + 1
    remove_tree(chain)
    assert not chain.exists()


@pytest.mark.quick
def test_cursor_moves_between_deep_paths_without_path_strings(chain: Path) -> None:
    top_fd = os.open(chain, os.O_RDONLY | os.O_DIRECTORY)
    cursor = DirCursor(top_fd)
    try:
        before = open_fds()
        for depth in (DEPTH - 1, DEPTH - 2, 1, DEPTH - 1):
            fd = cursor.open(["d"] * depth)
            try:
                assert os.stat("f", dir_fd=fd).st_size == 0
            finally:
                os.close(fd)
            assert open_fds() - before <= WALK_WINDOW
        made: list[str] = []

        def create(parent_fd: int, name: str, index: int) -> int:
            made.append(name)
            os.mkdir(name, dir_fd=parent_fd)
            return os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=parent_fd)

        os.close(cursor.open(["d"] * DEPTH + ["new", "newer"], create))
        assert made == ["new", "newer"]
        with pytest.raises(NotADirectoryError):
            cursor.open(["d", "f"])
    finally:
        cursor.close()
        os.close(top_fd)


def deep_shell(depth: int) -> str:
    """A shell script making /deep/d/d/... ``depth`` levels, with a file ``f`` at the bottom.

    No shell can ``cd`` or ``mkdir -p`` that deep (every path it hands the kernel would pass
    PATH_MAX), so chains of 1,000 are made and stacked by renaming: each round makes
    /n/d/.../d and moves the chain so far under it.
    """
    assert depth % 1000 == 0
    return ("p=d; i=1; while [ $i -lt 1000 ]; do p=$p/d; i=$((i+1)); done;"
            " mkdir -p /deep/$p && echo bottom > /deep/$p/f || exit 1; j=1;"
            f" while [ $j -lt {depth // 1000} ]; do"
            " mkdir -p /n/$p && mv /deep/d /n/$p/d && rmdir /deep && mv /n /deep || exit 1;"
            " j=$((j+1)); done")


@pytest.fixture
def deep(pydock: Pydock, tmp_path: Path) -> Iterator[Pydock]:
    """The CLI, and afterwards nothing deep left under ``tmp_path``, pass or fail: pytest
    removes old temporary directories with a recursive rmtree, which a 10,000-level tree
    stops (RecursionError) in every later session."""
    yield pydock
    leftovers = pydock.container_names() if (pydock.root / "containers").exists() else []
    if leftovers:
        pydock("rm", "-f", *leftovers)
    if mounts_under(tmp_path):
        return  # the mount check after each test reports them; removing would go through
    for child in tmp_path.iterdir():
        if child.is_dir() and not child.is_symlink():
            remove_tree(child)


def assert_root_clean(pydock: Pydock) -> None:
    listing = storage_listing(pydock.root)
    assert [p for p in listing if "/.rm-" in f"/{p}" or "/.commit-" in f"/{p}"] == []
    assert not list(pydock.root.glob("**/.rm-*"))
    assert mounts_under(pydock.root) == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_container_with_a_deep_tree_diffs_commits_exports_and_goes(deep: Pydock,
                                                                  tmp_path: Path,
                                                                  driver: str) -> None:
    pydock = deep
    pydock.ok("run", "--storage", driver, "--name", "deep", "sh", "-c",
              deep_shell(IN_CONTAINERS))
    diff = pydock.ok("diff", "deep").splitlines()
    assert "A /deep" in diff
    assert f"A /deep{'/d' * IN_CONTAINERS}/f" in diff
    pydock.ok("commit", "deep", "deep:1")
    assert pydock.ok("run", "--rm", "--storage", driver, "--image", "deep:1",
                     "ls", "/deep") == "d\n"
    pydock.ok("export", "deep", "-o", str(tmp_path / "deep.tar"))
    assert (tmp_path / "deep.tar").stat().st_size > 0
    pydock.ok("rm", "-f", "deep")
    pydock.ok("image", "rm", "deep:1")
    pydock.ok("prune")
    assert_root_clean(pydock)


def test_imported_layer_with_a_deep_chain_imports_runs_and_goes(deep: Pydock,
                                                               tmp_path: Path) -> None:
    pydock = deep
    members = [*tree(busybox_rootfs(tmp_path / "rootfs")),
               *(dir_("/".join(["d"] * level)) for level in range(1, IN_CONTAINERS + 1)),
               reg("/".join(["d"] * IN_CONTAINERS + ["f"]), b"bottom\n")]
    layer = write_tar(tmp_path / "deep.tar.gz", members, compress=True)
    pydock.ok("image", "import", str(layer), "deepchain")
    for driver in DRIVERS:  # overlay mounts the layer; copy and bind copy it
        assert pydock.ok("run", "--rm", "--storage", driver, "--image", "deepchain",
                         "ls", "/d") == "d\n", driver
    pydock.ok("image", "rm", "deepchain")
    pydock.ok("prune")
    assert_root_clean(pydock)
