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

This file is the command line and puts the run together: which tools there are, which
commands run on which tree, the report's header and notes. The modules beside it do one job
each: compare_trees.py makes the two root filesystems, compare_tools.py hands them to
pydock, runc and podman, compare_measure.py times the commands in shuffled rounds,
compare_figures.py names what is measured and derives medians, ratios and targets,
compare_report.py prints the tables, compare_commands.py runs commands, and
compare_workspace.py cleans up.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compare_commands import CommandFailed, note, run, same_every_run, version
from compare_figures import (
    BASELINE_OVERLAY,
    CP_A,
    PODMAN_BRIDGE,
    PYDOCK_BRIDGE,
    PYDOCK_COPY,
    PYDOCK_COPY_KEEP,
    PYDOCK_OVERLAY,
    PYDOCK_OVERLAY_KEEP,
    RUNC,
)
from compare_measure import Series, measure
from compare_report import report
from compare_tools import Podman, Pydock, Runc
from compare_trees import LARGE, SMALL, Tree, export_small_tree, generate_large_tree
from compare_workspace import Cleanup, remove_workspace, run_then_clean_up


@dataclass
class Tools:
    pydock: Pydock
    runc: Runc | None
    podmans: list[Podman]
    baseline: Pydock | None  # --baseline: another pydock to time beside this one


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
    if name == SMALL:
        series.append(Series(name, PYDOCK_BRIDGE, lambda i: pydock.argv(
            "run", "--rm", "--name", f"bench-bridge-{i}", "--network", "bridge", "--storage",
            "overlay", "--image", image, "/bin/true"), repeat))
        baseline = tools.baseline
        if baseline is not None:
            baseline_image = baseline.import_image(tree)
            series.append(Series(name, BASELINE_OVERLAY, lambda i: baseline.argv(
                "run", "--rm", "--name", f"bench-baseline-{i}", "--storage", "overlay",
                "--image", baseline_image, "/bin/true"), repeat))
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
        if name == SMALL and podman.driver == "overlay":
            reference = f"localhost/bench-{name}:latest"  # imported just above
            series.append(Series(name, PODMAN_BRIDGE, same_every_run(
                podman.default_network_argv(reference)), repeat))
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



def compare(args: argparse.Namespace, work: Path, cleanup: Cleanup) -> str:
    started, load_before = time.monotonic(), os.getloadavg()[0]
    notes: list[str] = []
    pydock = Pydock(args.pydock, work / "pydock")
    cleanup.add("pydock containers", pydock.remove_containers)
    tag = os.urandom(3).hex()
    pydock.use_private_bridge(f"pdbench{tag}", f"pydock_bench{tag}", args.bridge_subnet)
    cleanup.add("pydock's bridge and nftables table", pydock.prune)

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
    baseline = None
    if args.baseline is not None:
        baseline = Pydock(args.baseline, work / "baseline")
        cleanup.add("baseline pydock containers", baseline.remove_containers)
    tools = Tools(pydock, runc, podmans, baseline)

    note("exporting the default image and generating the large image")
    small = export_small_tree(pydock.argv, work)
    large = generate_large_tree(small, work)
    trees = [small, large]
    note("importing the images and making the bundles")
    all_series = (series_for(small, tools, work, args.repeat, args.repeat)
                  + series_for(large, tools, work, args.repeat, args.large_repeat))
    measure(all_series)
    for one in all_series:
        if one.error is not None:
            notes.append(f"{one.image} image, {one.label} failed: {one.error}")

    versions = [f"pydock: {version([args.pydock, '--version'])} ({args.pydock})"]
    if args.baseline is not None:
        versions.append(f"baseline: {version([args.baseline, '--version'])} ({args.baseline})")
    versions += [
        f"runc: {version([runc_path, '--version']) if runc_path else 'not installed'}",
        f"podman: {version([podman_path, '--version']) if podman_path else 'not installed'}",
    ]
    header = [
        f"pydock compare, {time.strftime('%Y-%m-%d %H:%M %Z')}: kernel {os.uname().release}, "
        f"{os.cpu_count()} CPUs, workspace on {run(['stat', '-f', '-c', '%T', str(work)]).strip()}",
        "; ".join(versions),
    ]
    notes.append(f"the whole run took {time.monotonic() - started:.0f} s; load average "
                 f"(1 min) {load_before:.2f} before it, {os.getloadavg()[0]:.2f} after")
    return report(all_series, trees, header, notes, args.format == "markdown")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time pydock against runc, podman and cp -a on the same root filesystems.")
    parser.add_argument("--pydock", default=shutil.which("pydock"),
                        help="the pydock executable to measure (default: pydock on PATH)")
    parser.add_argument("--baseline", metavar="PYDOCK",
                        help="another pydock (an earlier checkout's venv, say) timed beside "
                             "this one: what a change adds to `run --rm`")
    parser.add_argument("--repeat", type=int, default=11,
                        help="counted runs of each command (default 11)")
    parser.add_argument("--large-repeat", type=int, default=5,
                        help="counted runs of the commands that copy the large image: the "
                             "copy driver, podman's vfs, cp -a (default 5)")
    parser.add_argument("--bridge-subnet", default="10.213.47.0/24",
                        help="the subnet of the private bridge pydock's bridge runs use "
                             "(default 10.213.47.0/24; one no route of the host's covers)")
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
    if args.baseline is not None:
        found = shutil.which(args.baseline)
        if found is None:
            parser.error(f"--baseline {args.baseline}: not an executable")
        args.baseline = os.path.abspath(found)
    if args.repeat < 1 or args.large_repeat < 1:
        parser.error("--repeat and --large-repeat must be at least 1")
    return args


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        print("compare: pydock, runc and podman need root: run this with sudo", file=sys.stderr)
        return 1
    # A short name: podman refuses a --runroot longer than 50 characters.
    work = Path(tempfile.mkdtemp(prefix="pydock-cmp.", dir=args.tmpdir))
    cleanup = Cleanup()
    cleanup.add(f"removing {work}", lambda: remove_workspace(work))
    return run_then_clean_up(lambda: compare(args, work, cleanup), cleanup)


if __name__ == "__main__":
    sys.exit(main())
