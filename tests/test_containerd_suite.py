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
    SUITE_SKIPS,
    CaseResult,
    ExpectedFailure,
    SuiteRun,
    build_suite,
    run_suite,
    serve_command,
    suite_problems,
)

SOURCE = Path(__file__).with_name("containerd_suite")
# 128LayersMount takes most of a run (about 30 s on copy and bind, on two cores) and the other
# cases fit beside it. Measured on copy: 33 s with 2 at a time, 30 s with 4, 40 s with 8.
PARALLEL = 4

# Per driver, the cases it cannot pass by its documented nature. None, measured: even bind's
# sharing never shows, because no case keeps two snapshots of one parent active at once
# (docs/containerd.md). A case listed here must fail, with its symptom, or the test says so.
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
    # Every case fails, by name, with what the server said: Rename too, since the suite starts
    # the server before the case skips itself.
    assert len(problems) == len(SUITE_CASES)
    basic = next(problem for problem in problems if problem.startswith("Basic: fail"))
    assert "server exited before listening (exit status 3)" in basic
    assert "no such driver: " in basic


def _all_pass(**changed: CaseResult) -> SuiteRun:
    cases = {case: CaseResult("pass", f"--- PASS: {case}") for case in SUITE_CASES}
    cases["Rename"] = CaseResult("skip", f"issues.go:118: {SUITE_SKIPS['Rename']}")
    return SuiteRun({**cases, **changed}, [])


@pytest.mark.quick
def test_only_the_suites_own_skip_and_listed_failures_are_accepted() -> None:
    assert suite_problems(_all_pass()) == []
    listed = {"Basic": ExpectedFailure("shares its tree", "foo: unexpected")}
    assert suite_problems(_all_pass(Basic=CaseResult("fail", "foo: unexpected file")),
                          listed) == []
    # A listed case that passes, or fails another way, is reported; so is an unlisted one.
    assert suite_problems(_all_pass(), listed) == [
        "Basic: passes, but is listed as failing (shares its tree): take it off the list"]
    [other] = suite_problems(_all_pass(Basic=CaseResult("fail", "dial: refused")), listed)
    assert other.startswith("Basic: expected to fail with 'foo: unexpected' (shares its tree); "
                            "it did fail:\n    dial: refused")
    assert suite_problems(_all_pass(Walk=CaseResult("skip", "walk.go:1: not today"))) == [
        "Walk: skip\n    walk.go:1: not today"]
    [rename] = suite_problems(_all_pass(Rename=CaseResult("pass", "")))
    assert rename.startswith("Rename: containerd's suite skips it")


@pytest.mark.quick
def test_missing_unknown_cases_and_leftovers_are_reported() -> None:
    run = _all_pass(NewCase=CaseResult("pass", ""))
    del run.cases["Walk"]
    run.leftovers.append("a mount at /tmp/x: unmounted")
    assert suite_problems(run) == [
        "left behind: a mount at /tmp/x: unmounted", "Walk: did not run",
        "NewCase: a case this list does not know (pass): the suite changed"]
