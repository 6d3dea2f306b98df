"""containerd's own snapshotter test suite against ``pydock snapshotter serve --storage btrfs``
(:mod:`pydock.testing.snapshotter_suite`), with every case's root on a fresh btrfs filesystem.

The Go side of the suite is pydock's, in its repository's ``tests/containerd_suite``: a driver
outside that repository would point :func:`build_suite` at a copy of it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydock.testing.snapshotter_suite import (
    build_suite,
    run_suite,
    serve_command,
    suite_problems,
)

SOURCE = Path(__file__).parents[2] / "tests" / "containerd_suite"


@pytest.fixture(scope="session")
def suite_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's test binary, built once per session (about a minute of CPU when cold)."""
    return build_suite(SOURCE, tmp_path_factory.mktemp("containerd-suite"))


def test_containerd_snapshotter_suite(suite_binary: Path, btrfs: Path) -> None:
    run = run_suite(suite_binary, serve_command("btrfs"), btrfs / "suite")
    problems = suite_problems(run)
    assert not problems, "btrfs: containerd's snapshotter suite:\n" + "\n".join(problems)
