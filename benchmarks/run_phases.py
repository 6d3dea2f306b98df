#!/usr/bin/env python3
"""Where the time of ``pydock run --rm true`` goes, step by step, as medians over many runs.

Run as root, with the Python of the virtualenv pydock is installed in::

    sudo .venv/bin/python benchmarks/run_phases.py [--runs 15]

Each run is a new interpreter executing this file with ``--child``: it stamps the time
after each group of imports, then wraps the steps of the run path (creating the record and
the storage, forking the monitor, forking the container, recording its pid, its setup up
to exec, its exit) and runs ``pydock run --rm true`` in-process against a storage root of
its own. The stamps are CLOCK_MONOTONIC, comparable between the CLI and its monitor; the
parent stamps the spawn and the exit, so the interpreter's start and the last step are
measured too. A wrapper costs microseconds, yet the whole came out about 10 ms above a
plain ``pydock run --rm true`` on the project's VM (146 against 134 ms, medians of 25):
read the steps against each other, and the plain run for the total.

The run path's imports are made explicitly here, before the command, so that they show as
a phase of their own; in a plain run they happen lazily, on the way.
"""

from __future__ import annotations

# Only what the child needs before its first stamp: the rest is imported in main(). Not
# even typing, which click and pluggy import: it would hide a third of their cost.
import os
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

STAMPS_ENV = "PYDOCK_PHASE_STAMPS"

# (stamp that ends the phase, what happened since the previous stamp), in time order.
PHASES = [
    ("interpreter", "the interpreter starts (the virtualenv's site included)"),
    ("click+pluggy", "import click and pluggy"),
    ("cli", "import pydock's CLI: the group and the run command (pathlib with it)"),
    ("run modules", "import the run path: containers, state, images, plugins, driver, "
                    "monitor, runtime, rootfs, ctypes syscalls, overlay driver"),
    ("create>", "parse the command line, reach the run"),
    ("create<", "resolve the image, record the container (fsync), prepare overlay storage"),
    ("launch<", "fork the monitor"),
    ("start<", "in the monitor: fork the container into new namespaces"),
    ("recorded pid", "record the container's pid, open its gate"),
    ("exec'd", "the container: mounts, pivot_root, capabilities, user, exec"),
    ("exit recorded", "true runs and exits; its end recorded, --rm storage removed"),
    ("exit", "the monitor reports, the CLI exits"),
]


def child(root: str) -> None:
    """One run, stamping as it goes (in this process and, through fork, its monitor)."""
    path = os.environ[STAMPS_ENV]

    def stamp(label: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, f"{label} {time.monotonic()}\n".encode())
        finally:
            os.close(fd)

    stamp("interpreter")
    import click  # noqa: F401
    import pluggy  # noqa: F401

    stamp("click+pluggy")
    from pydock.core.cli import main as cli
    from pydock.core.cli import run as run_command  # noqa: F401  (what the group would load)

    stamp("cli")
    import pydock.drivers.overlay  # noqa: F401
    from pydock.core.containers import lifecycle
    from pydock.core.runtime import monitor, spawn

    stamp("run modules")

    def wrap(owner: Any, name: str, before: str | None, after: str | None) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if before:
                stamp(before)
            result = original(*args, **kwargs)
            if after:
                stamp(after)
            return result

        setattr(owner, name, wrapper)

    wrap(lifecycle.Containers, "create", "create>", "create<")
    wrap(monitor, "launch", None, "launch<")
    wrap(spawn, "start", None, "start<")
    wrap(lifecycle.Containers, "_record_process", None, "recorded pid")
    wrap(spawn, "exec_report", None, "exec'd")
    wrap(lifecycle.Containers, "_record_exited", None, "exit recorded")
    sys.argv = ["pydock", "--root", root, "run", "--rm", "--network", "none", "true"]
    cli.main()


def one_run(root: str) -> dict[str, float]:
    """The ms from the spawn to each stamp, and to the exit."""
    import subprocess
    import tempfile

    with tempfile.NamedTemporaryFile("r") as stamps:
        env = {**os.environ, STAMPS_ENV: stamps.name}
        spawned = time.monotonic()
        result = subprocess.run([sys.executable, __file__, "--child", root],
                                env=env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True)
        ended = time.monotonic()
        if result.returncode != 0:
            sys.exit(f"run_phases: the run failed ({result.returncode}): {result.stderr}")
        times = {label: (float(t) - spawned) * 1000
                 for label, _, t in (line.rpartition(" ")
                                     for line in stamps.read().splitlines())}
    times["exit"] = (ended - spawned) * 1000
    return times


def main() -> None:
    import argparse
    import statistics
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="counted runs (default 15)")
    parser.add_argument("--root", help="an existing storage root to run in (default: a new "
                        "temporary one, removed at the end)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run_phases: needs root, as pydock run does")
    with tempfile.TemporaryDirectory(prefix="pydock-phases-") as work:
        root = args.root or os.path.join(work, "root")
        one_run(root)  # builds the default image if the root has none; warms the caches
        runs = [one_run(root) for _ in range(args.runs)]
    print(f"pydock run --rm true, {args.runs} runs, ms (median of each step, and of the "
          f"time since the spawn)\n")
    print("| step | ms | since spawn |\n| --- | --- | --- |")
    previous = [0.0] * len(runs)
    for label, what in PHASES:
        steps = [run[label] - before for run, before in zip(runs, previous, strict=True)]
        print(f"| {what} | {statistics.median(steps):.1f} | "
              f"{statistics.median(run[label] for run in runs):.1f} |")
        previous = [run[label] for run in runs]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:  # before main()'s imports, which are not pydock's
        child(sys.argv[2])
    main()
