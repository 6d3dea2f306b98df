#!/usr/bin/env python3
"""pydock side by side with runc, podman and ``cp -a``, on the very same root filesystems.

Run as root from a checkout (benchmarks/README.md has the details)::

    sudo python3 benchmarks/compare.py --pydock .venv/bin/pydock

Two root filesystems are measured. The small one is pydock's embedded default image,
exported by the pydock under test, so that every runtime runs the same busybox tree. The
large one is that tree plus generated files (fixed seed: the same names, sizes and bytes
on every run). Each tool gets the tree in its own way: pydock and podman import a tar of
it, runc runs the unpacked directory from an OCI bundle, and ``cp -a`` copies the directory.

Every command is timed end to end, from fork to exit, as a user sees it, with the page
cache warm and nothing left to write back (a sync, untimed, comes before each command).
All the commands, on both images, run interleaved, one of each per round and in a
shuffled order, so that background load on a shared machine falls on every tool alike;
the first round warms the caches and is not counted. The commands that copy the large
tree take part in fewer rounds (``--large-repeat``).

Everything the script creates lives in one temporary directory (pydock's storage root,
podman's stores, runc's state and bundles, the trees) and is removed on exit, on an error
and on Ctrl-C. Tools that are not installed are skipped with a note; a command that fails
is reported with its error, and the rest is still measured.

Only the standard library is used, so any Python 3.11 can run it against any pydock:
the development virtualenv's or an installed wheel's (``--pydock PATH``).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

SMALL, LARGE = "small", "large"
WARMUP_ROUNDS = 1
ORDER_SEED = 1  # the order of the commands in each round: shuffled, the same every run

# The large image: the small tree plus SMALL_FILE_COUNT files of 1-32 KiB and
# BIG_FILE_COUNT files of 4 MiB under DATA_DIR, about 266 MB in about 8,600 entries.
LARGE_SEED = 5
DATA_DIR = "usr/share/bench-data"
SMALL_FILE_COUNT = 8300
SMALL_FILE_KIB = (1, 32)
BIG_FILE_COUNT = 30
BIG_FILE_SIZE = 4 << 20

# Where podman, as root, caches which blobs it has seen, whatever its --root.
BLOB_INFO_CACHE = Path("/var/lib/containers/cache")

# Labels of the measured commands; the tables and the targets refer to them.
PYDOCK_OVERLAY = "pydock run --rm --storage overlay"
PYDOCK_COPY = "pydock run --rm --storage copy"
PYDOCK_OVERLAY_KEEP = "pydock run --storage overlay (no --rm)"
PYDOCK_COPY_KEEP = "pydock run --storage copy (no --rm)"
COPY_PREPARE = "copy prepare (copy - overlay, no --rm)"
RUNC = "runc run"
PODMAN_OVERLAY = "podman run --rm (overlay)"
PODMAN_VFS = "podman run --rm (vfs)"
CP_A = "cp -a"
BASELINES = (RUNC, PODMAN_OVERLAY, PODMAN_VFS, CP_A)
PYDOCK_FIGURES = (PYDOCK_OVERLAY, PYDOCK_COPY, COPY_PREPARE)


@dataclass(frozen=True)
class Target:
    """What the project is measured against: pydock's figure / a baseline <= limit."""

    what: str
    image: str
    figure: str
    baseline_image: str
    baseline: str
    limit: float


TARGETS = (
    Target("overlay run vs podman run (overlay), small image", SMALL, PYDOCK_OVERLAY,
           SMALL, PODMAN_OVERLAY, 0.35),
    Target("overlay run vs runc run, small image", SMALL, PYDOCK_OVERLAY, SMALL, RUNC, 2.5),
    Target("overlay run, large image vs small image", LARGE, PYDOCK_OVERLAY,
           SMALL, PYDOCK_OVERLAY, 1.10),
    Target("copy prepare vs cp -a, large image", LARGE, COPY_PREPARE, LARGE, CP_A, 1.10),
)


class CommandFailed(Exception):
    """A command exited with a non-zero status; the message says which and why."""


def run(argv: list[str]) -> str:
    """Run an untimed set-up or clean-up command; its standard output."""
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise CommandFailed(_failure(argv, result.returncode, result.stderr))
    return result.stdout


def time_command(argv: list[str]) -> float:
    """Seconds from starting ``argv`` to its exit. Only stderr is kept, for the error."""
    start = time.perf_counter()
    result = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        stderr = result.stderr.decode(errors="replace")
        raise CommandFailed(_failure(argv, result.returncode, stderr))
    return elapsed


def _failure(argv: list[str], code: int, stderr: str) -> str:
    lines = stderr.strip().splitlines()
    return f"`{' '.join(argv)}` exited {code}: {lines[-1] if lines else 'no message'}"


def note(message: str) -> None:
    """Progress, on stderr so that stdout holds only the report."""
    print(f"compare: {message}", file=sys.stderr, flush=True)


# -- Cleaning up ----------------------------------------------------------------------


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


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    # SIGTERM unwinds like Ctrl-C does, through the clean-up.
    raise KeyboardInterrupt(f"signal {signum}")


# -- The root filesystems -------------------------------------------------------------


@dataclass(frozen=True)
class Tree:
    """A root filesystem, unpacked and as a tar, with its size."""

    name: str
    directory: Path
    tar: Path
    entries: int
    size: int


def export_small_tree(pydock: Pydock, work: Path) -> Tree:
    """pydock's embedded default image, exported as a tar and unpacked."""
    tar, directory = work / "small.tar", work / "small"
    run(pydock.argv("run", "--name", "bench-export", "/bin/true"))
    run(pydock.argv("export", "bench-export", "-o", str(tar)))
    run(pydock.argv("rm", "bench-export"))
    directory.mkdir()
    run(["tar", "-xpf", str(tar), "-C", str(directory)])
    return Tree(SMALL, directory, tar, *tree_size(directory))


def generate_large_tree(small: Tree, work: Path) -> Tree:
    """The small tree plus the generated files under DATA_DIR, unpacked and as a tar."""
    directory, tar = work / "large", work / "large.tar"
    run(["cp", "-a", str(small.directory), str(directory)])
    rng = random.Random(LARGE_SEED)
    data = directory / DATA_DIR
    for index in range(SMALL_FILE_COUNT):
        size = rng.randint(*SMALL_FILE_KIB) * 1024
        _write(data / f"{index // 100:02d}" / f"file-{index:04d}", rng.randbytes(size))
    for index in range(BIG_FILE_COUNT):
        _write(data / "big" / f"blob-{index:02d}", rng.randbytes(BIG_FILE_SIZE))
    run(["tar", "--numeric-owner", "-C", str(directory), "-cf", str(tar), "."])
    return Tree(LARGE, directory, tar, *tree_size(directory))


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(0o644)


def tree_size(directory: Path) -> tuple[int, int]:
    """Entries (files, directories, links) and bytes of regular files under ``directory``."""
    entries = size = 0
    for parent, dirs, files in os.walk(directory):
        entries += len(dirs) + len(files)
        for name in files:
            size += os.lstat(os.path.join(parent, name)).st_size
    return entries, size


# -- The tools ------------------------------------------------------------------------


class Pydock:
    """The pydock under test, with its own storage root in the workspace."""

    def __init__(self, executable: str, root: Path) -> None:
        self.executable, self.root = executable, root

    def argv(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(self.root), *args]

    def import_image(self, tree: Tree) -> str:
        reference = f"bench/{tree.name}"
        run(self.argv("image", "import", str(tree.tar), reference))
        return reference

    def remove_containers(self) -> None:
        """rm -f every container of our root (those an interrupted run left behind)."""
        if not self.root.exists():
            return
        listed = json.loads(run(self.argv("ps", "-a", "--format", "json")) or "[]")
        for container in listed:
            run(self.argv("rm", "-f", container["Names"]))


class Runc:
    """runc with its state directory in the workspace."""

    def __init__(self, executable: str, state: Path) -> None:
        self.executable, self.state = executable, state

    def argv(self, *args: str) -> list[str]:
        return [self.executable, "--root", str(self.state), *args]

    def command(self, tree: Tree, bundle: Path) -> Callable[[int], list[str]]:
        """Make ``bundle`` for ``tree``; the command of run i (each run its own id)."""
        self.make_bundle(tree, bundle)
        return lambda i: self.argv("run", "--bundle", str(bundle), f"bench-{tree.name}-{i}")

    def make_bundle(self, tree: Tree, bundle: Path) -> None:
        """An OCI bundle from ``runc spec`` that runs /bin/true in ``tree``.

        Changed from the spec's defaults: no terminal (nothing is attached), the command,
        and the root: the tree itself, by absolute path, writable as pydock's and podman's
        container roots are.
        """
        bundle.mkdir()
        run([self.executable, "spec", "--bundle", str(bundle)])
        config_path = bundle / "config.json"
        config = json.loads(config_path.read_text())
        config["process"]["terminal"] = False
        config["process"]["args"] = ["/bin/true"]
        config["root"] = {"path": str(tree.directory), "readonly": False}
        config_path.write_text(json.dumps(config, indent=2))

    def delete_containers(self) -> None:
        """delete -f every container in our state directory (left by an interrupted run)."""
        if not self.state.exists():
            return
        for container_id in run(self.argv("list", "--quiet")).split():
            run(self.argv("delete", "--force", container_id))


class Podman:
    """One podman store (one storage driver), isolated in the workspace.

    Why each flag (benchmarks/README.md says more):

    - ``--root``, ``--runroot``, ``--tmpdir``: storage, run state, libpod's own state
      (its "alive" marker, exit files, event log) all in the workspace, so the host's
      podman store is never touched and removing the directory removes everything.
    - ``--storage-driver``: overlay or vfs, the two drivers compared with pydock's.
    - ``--cgroup-manager cgroupfs``: podman's default, systemd, needs systemd as init.
    - ``--runtime runc`` (when runc is installed): podman's default runtime here, crun
      1.8, refuses to start any container on a hybrid cgroup v1/v2 host ("cgroups in
      hybrid mode not supported"), even with ``--cgroups disabled``. With runc, podman's
      figure is runc's plus podman's own work, which is what we want to see anyway.
    - ``--network none``: no network set-up to measure, as for pydock and runc.
    - ``podman import`` alone runs in a mount namespace of its own, where the host's
      blob-info cache is hidden behind a workspace directory (see hiding_blob_info_cache).
    - ``--ulimit nofile=N:N --ulimit nproc=M:M``: podman asks the runtime for 1048576
      open files and processes by default, which fails with EPERM where root lacks
      CAP_SYS_RESOURCE and its hard limits are lower. N is our own hard limit; M is also
      capped at kernel.pid_max, the most that podman itself keeps (seen: 32768).
    """

    def __init__(self, executable: str, driver: str, home: Path, runtime: str | None) -> None:
        self.driver = driver
        self.home = home
        self.globals = [executable, "--root", str(home / "root"), "--runroot",
                        str(home / "run"), "--tmpdir", str(home / "tmp"), "--storage-driver",
                        driver, "--cgroup-manager", "cgroupfs"]
        if runtime is not None:
            self.globals += ["--runtime", runtime]

    def argv(self, *args: str) -> list[str]:
        return [*self.globals, *args]

    @property
    def label(self) -> str:
        return PODMAN_OVERLAY if self.driver == "overlay" else PODMAN_VFS

    def command(self, tree: Tree) -> Callable[[int], list[str]]:
        """Import ``tree`` into this store; the command of every run."""
        reference = f"localhost/bench-{tree.name}:latest"
        run(self.hiding_blob_info_cache(self.argv("import", "--quiet", str(tree.tar),
                                                  reference)))
        return same_every_run(self.run_argv(reference))

    def hiding_blob_info_cache(self, argv: list[str]) -> list[str]:
        """``argv`` run with a workspace directory mounted over the host's blob-info cache.

        An import writes root's blob-info cache, /var/lib/containers/cache, wherever the
        store is, and podman has no flag to move it; so the import runs in a mount
        namespace of its own where that directory is one of ours. (A run does not touch
        the cache, so the timed commands need no such namespace.)
        """
        if not BLOB_INFO_CACHE.is_dir():
            return argv
        ours = self.home / "blob-info-cache"
        ours.mkdir(parents=True, exist_ok=True)
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" "$2" && shift 2 && exec "$@"', "sh", str(ours),
                str(BLOB_INFO_CACHE), *argv]

    def run_argv(self, image: str) -> list[str]:
        return self.argv("run", "--rm", "--network", "none", *podman_ulimits(), image,
                         "/bin/true")

    def remove_containers(self) -> None:
        """rm -f all containers: unmounts their roots and frees their locks, which live in
        shared memory that every podman store on the host shares."""
        if (self.home / "root").exists():
            run(self.argv("rm", "--all", "--force"))


def podman_ulimits() -> list[str]:
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
    nproc = pid_max if nproc == resource.RLIM_INFINITY else min(nproc, pid_max)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


# -- Measuring ------------------------------------------------------------------------


@dataclass
class Series:
    """One command measured on one image: how to run it once, and its times."""

    image: str
    label: str
    command: Callable[[int], list[str]]  # the argv of run i: ids and paths differ per run
    repeat: int  # counted runs
    after: Callable[[int], None] | None = None  # untimed clean-up after run i
    times: list[float] = field(default_factory=list)
    error: str | None = None


def measure(series: list[Series]) -> None:
    """Run every series once per round until it has its runs, after WARMUP_ROUNDS
    rounds that are not counted.

    All series share the rounds, both images included, so that a change in background
    load between two minutes does not show up as a difference between two figures. Each
    round runs them in a new order (shuffled, from a fixed seed), so that no command
    always runs just after the same other one (the deletion of a large copy, say).
    """
    order = random.Random(ORDER_SEED)
    total = WARMUP_ROUNDS + max(one.repeat for one in series)
    for round_ in range(total):
        note(f"round {round_ + 1}/{total}" + (" (warm-up)" if round_ < WARMUP_ROUNDS else ""))
        due = [one for one in series
               if one.error is None and round_ < WARMUP_ROUNDS + one.repeat]
        order.shuffle(due)
        for one in due:
            # Untimed: write back what the previous command (a copy, say) left dirty, so
            # that no command pays for another's writes.
            os.sync()
            try:
                elapsed = time_command(one.command(round_))
                if one.after is not None:
                    one.after(round_)
            except CommandFailed as exc:
                one.error = str(exc)
                continue
            if round_ >= WARMUP_ROUNDS:
                one.times.append(elapsed)


@dataclass(frozen=True)
class Figure:
    """A median (and, when measured directly, min and max) in seconds."""

    median: float
    low: float | None = None
    high: float | None = None
    runs: int = 0


def figures(all_series: list[Series]) -> dict[tuple[str, str], Figure]:
    """(image, label) -> figure, for every series that ran, plus the derived copy prepare."""
    found = {(s.image, s.label): Figure(statistics.median(s.times), min(s.times),
                                        max(s.times), len(s.times))
             for s in all_series if s.error is None and s.times}
    # The copy driver's prepare is not visible from outside pydock: it is what a copy
    # container costs more than an overlay one (whose prepare is three empty
    # directories), both without --rm so that deleting the copy is not counted.
    copy, overlay = found.get((LARGE, PYDOCK_COPY_KEEP)), found.get((LARGE, PYDOCK_OVERLAY_KEEP))
    if copy is not None and overlay is not None:
        found[LARGE, COPY_PREPARE] = Figure(copy.median - overlay.median)
    return found


# -- Reporting ------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = [headers, ["---"] * len(headers), *rows]
        return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]
    lines = [headers, ["-" * width for width in widths], *rows]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(cells, widths,
                                                                         strict=True)).rstrip()
                     for cells in lines)


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def ratio(found: dict[tuple[str, str], Figure], image: str, figure: str,
          baseline_image: str, baseline: str) -> float | None:
    ours, theirs = found.get((image, figure)), found.get((baseline_image, baseline))
    if ours is None or theirs is None or theirs.median <= 0:
        return None
    return ours.median / theirs.median


def report(all_series: list[Series], trees: list[Tree], header: list[str], notes: list[str],
           markdown: bool) -> str:
    found = figures(all_series)
    times_rows = []
    for one in all_series:
        figure = found.get((one.image, one.label))
        if figure is not None:
            times_rows.append([one.image, one.label, ms(figure.median), ms(figure.low),
                               ms(figure.high), str(figure.runs)])
        else:
            times_rows.append([one.image, one.label, "failed", "-", "-", "0"])
    prepare = found.get((LARGE, COPY_PREPARE))
    if prepare is not None:
        times_rows.append([LARGE, COPY_PREPARE, ms(prepare.median), "-", "-", "-"])

    ratio_rows = []
    for tree in trees:
        for label in PYDOCK_FIGURES:
            if (tree.name, label) not in found:
                continue
            cells = [tree.name, label, ms(found[tree.name, label].median)]
            for baseline in BASELINES:
                value = ratio(found, tree.name, label, tree.name, baseline)
                cells.append("-" if value is None else f"{value:.2f}x")
            ratio_rows.append(cells)

    target_rows = []
    for target in TARGETS:
        value = ratio(found, target.image, target.figure, target.baseline_image,
                      target.baseline)
        verdict = "n/a" if value is None else "PASS" if value <= target.limit else "FAIL"
        target_rows.append([target.what, "-" if value is None else f"{value:.2f}x",
                            f"<= {target.limit:.2f}x", verdict])

    images = "; ".join(f"{tree.name}: {tree.entries:,} entries, {tree.size / 1e6:.1f} MB"
                       for tree in trees)
    # In markdown the header lines would run together into one paragraph: make them a
    # list, and the titles bold.
    def title(text: str) -> str:
        return f"**{text}**" if markdown else text

    sections = [
        *(f"- {line}" if markdown else line for line in [*header, f"images: {images}"]),
        "",
        title("Times in ms (end to end, fork to exit; counted runs after "
              f"{WARMUP_ROUNDS} warm-up round)"),
        "",
        table(["image", "command", "median", "min", "max", "runs"], times_rows, markdown),
        "",
        title("pydock against the others (medians on the same image; below 1 is pydock "
              "faster)"),
        "",
        table(["image", "pydock", "median ms", *(f"/ {b}" for b in BASELINES)], ratio_rows,
              markdown),
        "",
        title("Targets"),
        "",
        table(["target", "measured", "limit", "result"], target_rows, markdown),
    ]
    if notes:
        sections += ["", title("Notes"), "", *(f"- {line}" for line in notes)]
    return "\n".join(sections)


# -- Putting it together --------------------------------------------------------------


@dataclass
class Tools:
    pydock: Pydock
    runc: Runc | None
    podmans: list[Podman]


def version(argv: list[str]) -> str:
    try:
        return run(argv).splitlines()[0].strip()
    except (CommandFailed, IndexError):
        return "version unknown"


def series_for(tree: Tree, tools: Tools, work: Path, repeat: int,
               copy_repeat: int) -> list[Series]:
    """Every command measured on one tree, its images imported and bundles made.

    The commands that copy the whole tree (the copy driver, podman's vfs, cp -a) run
    ``copy_repeat`` times, the others ``repeat`` times.
    """
    pydock = tools.pydock
    image = pydock.import_image(tree)
    name = tree.name

    def pydock_run(storage: str, remove: bool) -> Callable[[int], list[str]]:
        prefix = f"bench-{name}-{storage}-{'rm' if remove else 'keep'}"
        flags = ["--rm"] if remove else []
        return lambda i: pydock.argv("run", *flags, "--name", f"{prefix}-{i}", "--storage",
                                     storage, "--image", image, "/bin/true")

    def pydock_rm(storage: str) -> Callable[[int], None]:
        def remove(i: int) -> None:
            run(pydock.argv("rm", f"bench-{name}-{storage}-keep-{i}"))
        return remove

    series = [Series(name, PYDOCK_OVERLAY, pydock_run("overlay", True), repeat),
              Series(name, PYDOCK_COPY, pydock_run("copy", True), copy_repeat)]
    if name == LARGE:
        series += [Series(name, PYDOCK_OVERLAY_KEEP, pydock_run("overlay", False), repeat,
                          pydock_rm("overlay")),
                   Series(name, PYDOCK_COPY_KEEP, pydock_run("copy", False), copy_repeat,
                          pydock_rm("copy"))]
    if tools.runc is not None:
        runc = tools.runc
        series.append(prepared(name, RUNC, repeat,
                               lambda: runc.command(tree, work / f"bundle-{name}")))
    for podman in tools.podmans:
        series.append(prepared(name, podman.label,
                               copy_repeat if podman.driver == "vfs" else repeat,
                               functools.partial(podman.command, tree)))
    copy_target = work / f"cp-{name}"
    series.append(Series(name, CP_A,
                         same_every_run(["cp", "-a", str(tree.directory), str(copy_target)]),
                         copy_repeat, lambda _i: shutil.rmtree(copy_target)))
    return series


def prepared(image: str, label: str, repeat: int,
             setup: Callable[[], Callable[[int], list[str]]]) -> Series:
    """A series whose set-up (an import, a bundle) may fail: then it is reported, not run."""
    try:
        return Series(image, label, setup(), repeat)
    except CommandFailed as exc:
        return Series(image, label, same_every_run([]), repeat, error=f"set-up failed: {exc}")


def same_every_run(argv: list[str]) -> Callable[[int], list[str]]:
    return lambda _i: argv


def compare(args: argparse.Namespace, work: Path, cleanup: Cleanup) -> str:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    notes: list[str] = []
    pydock = Pydock(args.pydock, work / "pydock")
    cleanup.add("pydock containers", pydock.remove_containers)

    runc_path = shutil.which("runc")
    runc = Runc(runc_path, work / "runc-state") if runc_path else None
    if runc is None:
        notes.append("runc is not installed: runc run skipped (apt-get install runc)")
    else:
        cleanup.add("runc containers", runc.delete_containers)

    podman_path = shutil.which("podman")
    podmans: list[Podman] = []
    if podman_path is None:
        notes.append("podman is not installed: podman run skipped (apt-get install podman)")
    else:
        for driver in ("overlay", "vfs"):
            podman = Podman(podman_path, driver, work / f"podman-{driver}", runc_path)
            cleanup.add(f"podman {driver} containers", podman.remove_containers)
            podmans.append(podman)
        command = " ".join(podmans[0].run_argv("IMAGE")).replace(str(work), "$WORK")
        notes.append(f"podman (and likewise with vfs): {command}")
        if runc_path is None:
            notes.append("podman uses its default runtime, since runc is not installed")
    tools = Tools(pydock, runc, podmans)

    note("exporting the default image and generating the large image")
    small = export_small_tree(pydock, work)
    large = generate_large_tree(small, work)
    trees = [small, large]
    note("importing the images and making the bundles")
    all_series = (series_for(small, tools, work, args.repeat, args.repeat)
                  + series_for(large, tools, work, args.repeat, args.large_repeat))
    measure(all_series)
    for one in all_series:
        if one.error is not None:
            notes.append(f"{one.image} image, {one.label} failed: {one.error}")

    header = [
        f"pydock compare, {time.strftime('%Y-%m-%d %H:%M %Z')}: kernel {os.uname().release}, "
        f"{os.cpu_count()} CPUs, workspace on {run(['stat', '-f', '-c', '%T', str(work)]).strip()}",
        f"pydock: {version([args.pydock, '--version'])} ({args.pydock}); "
        f"runc: {version([runc_path, '--version']) if runc_path else 'not installed'}; "
        f"podman: {version([podman_path, '--version']) if podman_path else 'not installed'}",
    ]
    notes.append(f"the whole run took {time.monotonic() - started:.0f} s; load average "
                 f"(1 min) {load_before:.2f} before it, {os.getloadavg()[0]:.2f} after")
    return report(all_series, trees, header, notes, args.format == "markdown")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time pydock against runc, podman and cp -a on the same root filesystems.")
    parser.add_argument("--pydock", default=shutil.which("pydock"),
                        help="the pydock executable to measure (default: pydock on PATH)")
    parser.add_argument("--repeat", type=int, default=11,
                        help="counted runs of each command (default 11)")
    parser.add_argument("--large-repeat", type=int, default=5,
                        help="counted runs of the commands that copy the large image: the "
                             "copy driver, podman's vfs, cp -a (default 5)")
    parser.add_argument("--format", choices=["text", "markdown"], default="text")
    parser.add_argument("--tmpdir", default="/var/tmp",
                        help="where the workspace is made (default /var/tmp)")
    args = parser.parse_args()
    if args.pydock is None:
        parser.error("no pydock on PATH: give one with --pydock PATH")
    # An absolute path, so that the report says exactly which pydock was measured.
    found = shutil.which(args.pydock)
    if found is None:
        parser.error(f"--pydock {args.pydock}: not an executable")
    args.pydock = os.path.abspath(found)
    if args.repeat < 1 or args.large_repeat < 1:
        parser.error("--repeat and --large-repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("compare: pydock, runc and podman need root: run this with sudo", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, _interrupted)
    # A short name: podman refuses a --runroot longer than 50 characters.
    work = Path(tempfile.mkdtemp(prefix="pydock-cmp.", dir=args.tmpdir))
    cleanup = Cleanup()
    cleanup.add(f"removing {work}", lambda: remove_workspace(work))
    try:
        print(compare(args, work, cleanup))
        return 0
    except CommandFailed as exc:
        note(f"failed: {exc}")
        return 1
    except KeyboardInterrupt:
        note("interrupted")
        return 130
    finally:
        # A second Ctrl-C must not leave half the clean-up undone.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        note("cleaning up")
        cleanup.run()


if __name__ == "__main__":
    sys.exit(main())
