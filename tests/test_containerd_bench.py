"""benchmarks/containerd_run.py still runs against the pydock beside it, in a tiny mode.

No time is asserted, only that every figure is there, as a number, and that the script
leaves no containerd, mount or directory of its own behind."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from pydock.testing.containerd import have_containerd

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
NUMBER = r"\d+\.\d"


@pytest.mark.needs_root
@pytest.mark.skipif(not have_containerd(), reason="containerd is not installed "
                    "(scripts/setup.sh installs Debian's)")
def test_containerd_run_reports_every_figure_and_leaves_nothing() -> None:
    before = set(Path("/tmp").glob("ctd-*")) | set(Path("/var/tmp").glob("pydock-ctd-bench-*"))
    result = subprocess.run([sys.executable, str(BENCHMARKS / "containerd_run.py"),
                             "--repeat", "1", "--megabytes", "4", "--calls", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    runs = [row for row in rows if re.fullmatch(
        rf"\| (small|large) \| (pydock-overlay|overlayfs) \| {NUMBER} \| {NUMBER} \| "
        rf"{NUMBER} \| 1 \|", row)]
    assert len(runs) == 4, result.stdout
    assert len([row for row in rows if re.fullmatch(
        rf"\| (small|large) \| {NUMBER}\dx \| (PASS|FAIL) \|", row)]) == 2, result.stdout
    assert len([row for row in rows if re.fullmatch(
        rf"\| (small|large) \| {NUMBER} \| {NUMBER} \|", row)]) == 2, result.stdout
    calls = [row.split(" | ")[0][2:] for row in rows if re.fullmatch(
        rf"\| [^|]+ \| {NUMBER} \| {NUMBER} \| {NUMBER} \| 2 \|", row)]
    assert calls == ["Stat", "Prepare (1 layer)", "Prepare (5 layers)", "Commit (1 MiB file)",
                     "Remove (committed)"], result.stdout
    after = set(Path("/tmp").glob("ctd-*")) | set(Path("/var/tmp").glob("pydock-ctd-bench-*"))
    assert after <= before
