#!/usr/bin/env python3
"""What relaying a container's stdio costs: pydock's output throughput beside runc's, and
the latency of ``pydock run --rm /bin/true``.

Run as root from a checkout::

    sudo python3 benchmarks/compare_stdio.py --pydock .venv/bin/pydock

pydock never hands the caller's fds to a container: its output goes through pipes the
monitor reads (and writes to the log and to the CLI), its input through a pipe the
monitor fills. runc, given no terminal, passes its own stdio straight through: it is the
floor. Both run the same tree, pydock's embedded default image exported by the pydock
under test, and both move ``--size`` MiB of zeros through a pipe::

    pydock run --rm dd if=/dev/zero bs=65536 count=16384 | wc -c    # output
    pydock exec box dd if=/dev/zero bs=65536 count=16384 | wc -c    # output, through the CLI
    head -c 1G /dev/zero | pydock run --rm -i dd of=/dev/null bs=65536 iflag=fullblock
    runc run --bundle B ID | wc -c, and the input the same way       # the same commands

Each command runs ``--repeat`` times after one warm-up run, alternating; the medians and
the throughput in MiB/s are printed. Everything lives in one temporary directory, removed
on exit. Only the standard library is used, as for compare.py, whose modules this imports.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from compare_commands import CommandFailed, note, run
from compare_tools import Pydock, Runc
from compare_trees import export_small_tree
from compare_workspace import Cleanup, remove_workspace, run_then_clean_up


def timed_pipeline(pipeline: str, expected: str) -> float:
    """Seconds for the shell ``pipeline``; checks that its output (stdout and stderr) holds
    ``expected`` (wc's byte count, dd's full blocks): every byte came through."""
    start = time.perf_counter()
    result = subprocess.run(["sh", "-c", f"({pipeline}) 2>&1"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or expected not in result.stdout:
        raise CommandFailed(f"`{pipeline}` exited {result.returncode} without {expected!r}: "
                            f"{result.stdout.strip()[-300:]}")
    return elapsed


def timed_run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def measure(pydock_path: str, runc_path: str, size_mib: int, repeat: int,
            work: Path) -> list[tuple[str, float, str]]:
    # Its containers on --network none, as runc's: the copies are what is measured.
    os.environ["PYDOCK_DEFAULT_NETWORK"] = "none"
    pydock = Pydock(pydock_path, work / "pydock-root")
    runc = Runc(runc_path, work / "runc-state")
    note("exporting the default image for runc")
    tree = export_small_tree(pydock.argv, work)
    size = size_mib << 20
    # dd with 64 KiB blocks, not busybox's head and wc: those move a few KiB per system
    # call, top out near 150 MiB/s on their own, and would hide what is measured here.
    write = ["dd", "if=/dev/zero", "bs=65536", f"count={size >> 16}"]
    read = ["dd", "of=/dev/null", "bs=65536", "iflag=fullblock"]
    runc.make_bundle(tree, work / "out", tuple(write))
    runc.make_bundle(tree, work / "in", tuple(read))
    run(pydock.argv("run", "-d", "--name", "bench-exec", "sleep", "100000"))

    def pydock_line(*args: str) -> str:
        return shlex.join(pydock.argv(*args))

    def runc_line(bundle: str, i: int) -> str:
        return shlex.join(runc.argv("run", "--bundle", str(work / bundle), f"{bundle}-{i}"))

    # The containers' dd reports on stderr, which must not reach wc.
    out, zeros = "2>/dev/null | wc -c", f"head -c {size} /dev/zero"
    counted = {"output": str(size), "input": f"{size >> 16}+0 records in"}
    pipelines: dict[str, Callable[[int], str]] = {
        "output: pydock run": lambda _i: f"{pydock_line('run', '--rm', *write)} {out}",
        "output: pydock exec": lambda _i: f"{pydock_line('exec', 'bench-exec', *write)} {out}",
        "output: runc run": lambda i: f"{runc_line('out', i)} {out}",
        "input: pydock run": lambda _i: f"{zeros} | {pydock_line('run', '--rm', '-i', *read)}",
        "input: runc run": lambda i: f"{zeros} | {runc_line('in', i)}",
    }
    latency = "pydock run --rm /bin/true"
    times: dict[str, list[float]] = {name: [] for name in [*pipelines, latency]}
    for i in range(repeat + 1):  # round 0 warms the caches and is not counted
        note(f"round {i} of {repeat}")
        for name, pipeline in pipelines.items():
            elapsed = timed_pipeline(pipeline(i), counted[name.split(':')[0]])
            if i:
                times[name].append(elapsed)
        elapsed = timed_run(pydock.argv("run", "--rm", "/bin/true"))
        if i:
            times[latency].append(elapsed)
    rows = []
    for name, samples in times.items():
        median = statistics.median(samples)
        rate = "" if name == latency else f"{size_mib / median:.0f} MiB/s"
        rows.append((name, median, rate))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pydock", default="pydock", help="the pydock to measure")
    parser.add_argument("--runc", default="runc", help="the runc to compare with")
    parser.add_argument("--size", type=int, default=1024, help="MiB written (default 1024)")
    parser.add_argument("--repeat", type=int, default=5, help="counted runs of each command")
    parser.add_argument("--tmpdir", default="/var/tmp", help="where the workspace is made")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pydock-stdio-", dir=args.tmpdir))
    cleanup = Cleanup()
    cleanup.add("removing the workspace", lambda: remove_workspace(work))
    cleanup.add("removing runc's containers",
                Runc(args.runc, work / "runc-state").delete_containers)
    cleanup.add("removing pydock's containers",
                Pydock(args.pydock, work / "pydock-root").remove_containers)

    def table() -> str:
        rows = measure(args.pydock, args.runc, args.size, args.repeat, work)
        return "\n".join([
            f"| {args.size} MiB through a pipe (median of {args.repeat}) | seconds | throughput |",
            "| --- | ---: | ---: |",
            *(f"| {name} | {median:.3f} | {rate} |" for name, median, rate in rows)])

    return run_then_clean_up(table, cleanup)


if __name__ == "__main__":
    sys.exit(main())
