"""containerd's own snapshotter test suite, run against ``pydock snapshotter serve``.

containerd tests its snapshotters with one suite (``snapshots/testsuite`` in its sources; Debian
ships them in golang-github-containerd-containerd-dev). A Go test file (pydock's
``tests/containerd_suite``) runs that suite through containerd's proxy client, the client
containerd itself uses for a proxy snapshotter, starting a fresh server and root for each case.
:func:`build_suite` builds it into a test binary offline, in GOPATH mode against Debian's sources,
:func:`run_suite` runs the binary with a serve command and gives each case's outcome and output,
and :func:`suite_problems` compares them with what is expected of a driver::

    binary = build_suite(source, tmp / "build")
    run = run_suite(binary, serve_command("overlay"), tmp / "run")
    assert not (problems := suite_problems(run)), "\\n".join(problems)

The suite mounts what the server returns on the host and unmounts it, so it needs root. Every
server runs in the binary's process group, which :func:`run_suite` kills whole on a timeout.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pydock.core.syscalls import MNT_DETACH, umount2
from pydock.testing.cli import PYDOCK, mounts_under

# Debian's Go sources: the containerd, grpc and gogo packages the test file imports.
DEBIAN_GOPATH = Path("/usr/share/gocode")
# The import path the test file is built as, and the Go test that runs the suite.
_PACKAGE = "pydocksuite"
_TEST = "TestSnapshotterSuite"

# The suite's cases (t.Run names, typos included), in its order: a name missing from a run, or
# one not listed here, means the suite and this list have drifted apart.
SUITE_CASES = (
    "Basic", "StatActive", "StatComitted", "TransitivityTest", "PreareViewFailingtest", "Update",
    "Remove", "Walk", "LayerFileupdate", "RemoveDirectoryInLowerLayer", "Chown",
    "DirectoryPermissionOnCommit", "RemoveIntermediateSnapshot", "DeletedFilesInChildSnapshot",
    "MoveFileFromLowerLayer", "Rename", "ViewReadonly", "StatInWalk", "CloseTwice",
    "RootPermission", "128LayersMount",
)
# Cases the suite itself skips for every snapshotter, with the message it skips with: these are
# containerd's skips, not pydock's, and a skip for any other reason is a failure.
SUITE_SKIPS = {"Rename": "rename test still fails on some kernels with overlay"}

# Enough of a failing case's output to read its errors.
_MAX_OUTPUT_LINES = 60
# Lines of containerd's test helpers: each unmount, and the dump of a failed case's whole
# directory (hundreds of lines for 128LayersMount) that would bury the error.
_HELPER_LINE = re.compile(r"\s*helpers(_unix)?\.go:\d+: ")


class ExpectedFailure(NamedTuple):
    """A case a driver cannot pass by its documented nature: why, and a fragment of the output
    that shows it failed for that reason and not another."""

    reason: str
    symptom: str


@dataclass(frozen=True)
class CaseResult:
    outcome: str  # "pass", "fail" or "skip", as the Go test runner says
    output: str  # the case's log, with what its server wrote (lines "server: ...")


@dataclass(frozen=True)
class SuiteRun:
    cases: dict[str, CaseResult]
    leftovers: list[str]  # processes or mounts the run left, already cleared


def serve_command(driver: str, pydock: str = PYDOCK) -> str:
    """The shell command that serves ``driver`` for one case (``exec``: SIGTERM reaches it)."""
    return (f'exec {shlex.quote(pydock)} --root "$ROOT" snapshotter serve --address "$ADDRESS" '
            f"--storage {shlex.quote(driver)}")


def build_suite(source: Path, work: Path) -> Path:
    """The test binary built from the Go test file(s) in ``source``, under ``work``.

    GOPATH mode with Debian's sources needs no network and no module proxy. Go's build cache
    and HOME go under ``work`` too, so nothing is written elsewhere; a cold build takes about
    a minute of CPU, so it runs niced.
    """
    go = shutil.which("go")
    if go is None or not (DEBIAN_GOPATH / "src/github.com/containerd/containerd").is_dir():
        raise AssertionError("building containerd's snapshotter suite needs golang-go and "
                             "golang-github-containerd-containerd-dev (scripts/setup.sh)")
    package = work / "gopath/src" / _PACKAGE
    shutil.copytree(source, package)
    binary = work / "snapshotter-suite.test"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
           "GO111MODULE": "off", "GOPATH": f"{work / 'gopath'}:{DEBIAN_GOPATH}",
           "GOCACHE": str(work / "gocache"), "GOPROXY": "off", "GOFLAGS": ""}
    built = subprocess.run(["nice", "-n", "10", go, "test", "-c", "-o", str(binary), _PACKAGE],
                           cwd=work, env=env, capture_output=True, text=True, timeout=900)
    if built.returncode != 0:
        raise AssertionError(f"building containerd's snapshotter suite failed:\n"
                             f"{built.stdout}{built.stderr}")
    return binary


def run_suite(binary: Path, serve: str, work: Path, parallel: int = 4,
              timeout: float = 600) -> SuiteRun:
    """Run the suite with ``serve`` (see :func:`serve_command`) in ``work``: each case's result,
    and what the run left behind (cleared).

    The suite makes each case's root in a temporary directory of its own under ``work``, which
    must be on the filesystem the driver needs. Sockets go to a short directory of their own
    (a unix socket's path must fit in 108 bytes), removed after. Raises AssertionError when
    no case ran, or the run did not finish within ``timeout`` (its processes are killed).
    """
    work.mkdir(parents=True, exist_ok=True)
    sockets = tempfile.mkdtemp(prefix="pydock-suite-")
    go = shutil.which("go") or "go"
    # test2json attributes each output line to its case, as `go test -json` does.
    command = [go, "tool", "test2json", "-p", _PACKAGE, str(binary), "-test.root", "-test.v",
               f"-test.parallel={parallel}", "-test.run", f"^{_TEST}$", "-serve", serve,
               "-socket-dir", sockets]
    proc = subprocess.Popen(command, env={**os.environ, "TMPDIR": str(work)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, _ = proc.communicate()
            # A case killed halfway leaves its mounts.
            cleared = "".join(f"; {leftover}" for leftover in _clear_leftovers(proc.pid, work))
            raise AssertionError(f"the suite did not finish within {timeout:.0f}s; killed"
                                 f"{cleared}. Output so far:\n{_tail(stdout)}") from None
        leftovers = _clear_leftovers(proc.pid, work)
    finally:
        if proc.returncode is None:  # interrupted: the servers must not outlive the run
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(sockets, ignore_errors=True)
    return SuiteRun(_results(stdout), leftovers)


def suite_problems(run: SuiteRun,
                   expected_failures: Mapping[str, ExpectedFailure] | None = None) -> list[str]:
    """What differs from "every case passes, but the suite's own skips and the expected
    failures, and nothing is left behind"; one entry per case, naming it, with its output where
    that explains it."""
    expected_failures = expected_failures or {}
    results = run.cases
    problems = [f"left behind: {leftover}" for leftover in run.leftovers]
    for case in SUITE_CASES:
        result = results.get(case)
        if result is None:
            problems.append(f"{case}: did not run")
        elif case in SUITE_SKIPS:
            if result.outcome != "skip" or SUITE_SKIPS[case] not in result.output:
                problems.append(f"{case}: containerd's suite skips it ({SUITE_SKIPS[case]!r}); "
                                f"here it did {result.outcome}:\n{_shown(result.output)}")
        elif case in expected_failures:
            expected = expected_failures[case]
            if result.outcome == "pass":
                problems.append(f"{case}: passes, but is listed as failing ({expected.reason}): "
                                "take it off the list")
            elif result.outcome != "fail" or expected.symptom not in result.output:
                problems.append(f"{case}: expected to fail with {expected.symptom!r} "
                                f"({expected.reason}); it did {result.outcome}:\n"
                                f"{_shown(result.output)}")
        elif result.outcome != "pass":
            problems.append(f"{case}: {result.outcome}\n{_shown(result.output)}")
    problems += [f"{case}: a case this list does not know ({result.outcome}): the suite changed"
                 for case, result in results.items() if case not in SUITE_CASES]
    return problems


def _results(stdout: str) -> dict[str, CaseResult]:
    outcomes: dict[str, str] = {}
    outputs: dict[str, list[str]] = {}
    stray = []  # lines of no case: the build's or the runner's own complaints
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            stray.append(line)
            continue
        test = event.get("Test") or ""
        case = test.removeprefix(f"{_TEST}/") if test.startswith(f"{_TEST}/") else ""
        if not case:
            if event["Action"] == "output":
                stray.append(event["Output"].rstrip("\n"))
        elif event["Action"] == "output":
            # The runner's own bookkeeping lines say nothing about the case.
            if not event["Output"].startswith(("=== RUN", "=== PAUSE", "=== CONT")):
                outputs.setdefault(case, []).append(event["Output"].rstrip("\n"))
        elif event["Action"] in ("pass", "fail", "skip"):
            outcomes[case] = event["Action"]
    if not outcomes:
        raise AssertionError(f"the suite ran no case:\n{_tail(chr(10).join(stray))}")
    return {case: CaseResult(outcome, "\n".join(outputs.get(case, [])))
            for case, outcome in outcomes.items()}


def _clear_leftovers(group: int, work: Path) -> list[str]:
    """Servers that outlived their case and mounts the suite left, each killed or unmounted."""
    leftovers = []
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        pass
    else:
        os.killpg(group, signal.SIGKILL)
        leftovers.append("processes of the suite's process group (its servers): killed")
    mounts = mounts_under(work)
    for point in reversed(mounts):
        umount2(point, MNT_DETACH)
    leftovers += [f"a mount at {point}: unmounted" for point in mounts]
    return leftovers


def _shown(output: str) -> str:
    lines = [line for line in output.splitlines() if not _HELPER_LINE.match(line)]
    shown = lines[:_MAX_OUTPUT_LINES]
    if len(lines) > _MAX_OUTPUT_LINES:
        shown.append(f"... and {len(lines) - _MAX_OUTPUT_LINES} more lines")
    if helpers := len(output.splitlines()) - len(lines):
        shown.append(f"({helpers} lines of unmounts and directory dumps left out)")
    return textwrap.indent("\n".join(shown), "    ")


def _tail(text: str) -> str:
    return "\n".join(text.splitlines()[-_MAX_OUTPUT_LINES:])
