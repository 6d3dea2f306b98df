"""The scripts in benchmarks/ still run against the pydock beside them.

``run_phases.py`` wraps functions of the run path by name: a renamed one must fail here,
not in the hands of someone measuring. No time is asserted, only the table's shape.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.testing.cli import Pydock

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def phases() -> list[tuple[str, str]]:
    spec = importlib.util.spec_from_file_location("run_phases", BENCHMARKS / "run_phases.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.PHASES)


def test_run_phases_reports_every_step_and_leaves_no_container(pydock: Pydock) -> None:
    result = subprocess.run([sys.executable, str(BENCHMARKS / "run_phases.py"), "--runs", "2",
                             "--root", str(pydock.root)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")][2:]
    assert [row.split(" | ")[0][2:] for row in rows] == [what for _, what in phases()]
    for row in rows:
        assert re.fullmatch(r"\| .+ \| -?\d+\.\d \| \d+\.\d \|", row), row
    # The last column is the time since the spawn: it ends with the whole run's.
    assert float(rows[-1].split(" | ")[-1].rstrip(" |")) > 0
    assert pydock.container_names() == []


def test_compare_finds_its_modules_and_parses_its_command_line() -> None:
    # compare.py imports its compare_*.py modules from its own folder, from any working
    # directory; --help needs no root and runs nothing.
    result = subprocess.run([sys.executable, str(BENCHMARKS / "compare.py"), "--help"],
                            capture_output=True, text=True, timeout=60, cwd="/")
    assert result.returncode == 0, result.stderr
    assert "--large-repeat" in result.stdout
    assert "--baseline" in result.stdout


@pytest.mark.needs_root
def test_compare_bombs_measures_what_a_bomb_leaves() -> None:
    # pydock alone, on one bomb: sparse files claiming 3/4 of a 64 MiB store each, taken
    # and written sparse, so the store holds little after.
    result = subprocess.run([sys.executable, str(BENCHMARKS / "compare_bombs.py"),
                             "--pydock", str(Path(sys.executable).parent / "pydock"),
                             "--tool", "pydock", "--bomb", "sparse", "--store", "64"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [row] = [line for line in result.stdout.splitlines() if line.startswith("| 4 sparse")]
    _, tool, outcome, seconds, memory, peak, after = row.strip("| ").split(" | ")
    assert (tool, outcome) == ("pydock", "ok")
    assert float(seconds) > 0 and memory.endswith(" MiB")
    assert int(peak.removesuffix(" MiB")) < 8 and int(after.removesuffix(" MiB")) < 4
