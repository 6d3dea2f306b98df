"""containerd's own snapshotter test suite against ``pydock snapshotter serve``, per built-in
driver (:mod:`pydock.testing.snapshotter_suite`; the Go side is ``containerd_suite/``).

Every case starts its own server on a fresh root, through containerd's proxy client, and mounts
what the server returns on the host, as containerd does for a container. overlay and copy pass
every case; the bind driver, whose containers of one image share one writable directory (its
documented nature, docs/containerd.md), fails the cases listed below, each for the reason given,
and each is checked to fail that way. The suite itself skips Rename for every snapshotter.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pydock.testing.snapshotter_suite import (
    SUITE_CASES,
    ExpectedFailure,
    build_suite,
    run_suite,
    serve_command,
    suite_problems,
)

SOURCE = Path(__file__).with_name("containerd_suite")
# Two cores: the cases mostly wait on their servers' start-up, so a few at a time overlap well.
PARALLEL = 4

EXPECTED_FAILURES: dict[str, dict[str, ExpectedFailure]] = {
    "overlay": {},
    "copy": {},
    "bind": {},
}


@pytest.fixture(scope="session")
def suite_binary(needs_root: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite's test binary, built once per session (about a minute of CPU when cold)."""
    return build_suite(SOURCE, tmp_path_factory.mktemp("containerd-suite"))


@pytest.mark.needs_root
@pytest.mark.parametrize("driver", sorted(EXPECTED_FAILURES))
def test_containerd_snapshotter_suite(driver: str, suite_binary: Path, tmp_path: Path) -> None:
    run = run_suite(suite_binary, serve_command(driver), tmp_path, parallel=PARALLEL)
    problems = suite_problems(run, EXPECTED_FAILURES[driver])
    assert not problems, f"{driver}: containerd's snapshotter suite:\n" + "\n".join(problems)


@pytest.mark.needs_root
def test_a_server_that_never_listens_fails_every_case_with_its_output(
        suite_binary: Path, tmp_path: Path) -> None:
    run = run_suite(suite_binary, 'echo "no such driver: $ROOT" >&2; exit 3', tmp_path)
    problems = suite_problems(run)
    # Rename is skipped before the suite asks for a server; every other case fails, by name,
    # with what the server said.
    assert len(problems) == len(SUITE_CASES) - 1
    basic = next(problem for problem in problems if problem.startswith("Basic: fail"))
    assert "server exited before listening (exit status 3)" in basic
    assert "no such driver: " in basic
