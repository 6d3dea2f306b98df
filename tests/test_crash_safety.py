"""Crash safety: pydock killed with SIGKILL at any step of run, of its monitor, of rm and
of image import leaves a state that ``ps -a`` reports truthfully and that ``rm -f`` (or
``prune``, once no record is left) cleans completely: no directory, no hidden leftover,
no mount, no cgroup.

The crashes are real: ``PYDOCK_FAILPOINT=STEP`` (pydock.core.failpoints) makes the process
at STEP SIGKILL itself there. Each test compares a listing of the whole storage root, the
image store aside, with the one taken before the crash, after a first container of the same
kind has created the directories every later one shares.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from helpers import (
    LIMITED,
    NEEDS_MEMORY_CGROUP,
    assert_cleaned,
    busybox_tarball,
    storage_listing,
    warm_up,
)

from pydock.core.containers import lifecycle
from pydock.core.containers.state import StateStore
from pydock.core.errors import PydockError
from pydock.core.processes import process_start_time
from pydock.testing.cli import Pydock

EXIT_CODE = 3
# Long enough for a container that escaped its record to be caught alive after rm -f.
COMMAND = ("sh", "-c", f"sleep 1; exit {EXIT_CODE}")

# (driver, extra run options): overlay and copy, each with and without a cgroup.
CONFIGS = [
    pytest.param("overlay", (), id="overlay"),
    pytest.param("copy", (), id="copy"),
    pytest.param("overlay", LIMITED, id="overlay-m", marks=NEEDS_MEMORY_CGROUP),
    pytest.param("copy", LIMITED, id="copy-m", marks=NEEDS_MEMORY_CGROUP),
]
T = TypeVar("T")

# Where `run` and its monitor die, and what ps -a says once the container's process (if
# one got as far as running its command) has ended.
RUN_STEPS = {
    "run.record-created": "Created",
    "run.storage-prepared": "Created",
    "run.cgroup-created": "Created",
    # The monitor lives on without the CLI and records the real exit code.
    "run.monitor-forked": f"Exited ({EXIT_CODE})",
    "monitor.before-start": "Created",
    # The container's process waits at its gate, finds the monitor gone, and exits
    # before it has done anything: it never started.
    "monitor.started": "Created",
    # From here the command runs; no one is left to record how it ended.
    "monitor.released": "Exited (unknown)",
    "monitor.recorded-running": "Exited (unknown)",
    "monitor.container-exited": "Exited (unknown)",
}
REMOVAL_STEPS = ("rm.killed", "rm.cgroup-removed", "rm.storage-removed", "rm.record-renamed")


def ps_rows(pydock: Pydock) -> dict[str, dict[str, Any]]:
    result = pydock("ps", "-a", "--format", "json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return {row["Names"]: row for row in json.loads(result.stdout)}


def said_running(pydock: Pydock, name: str) -> bool:
    """Whether inspect says the container runs; if so, its pid must be a live process."""
    state = pydock.inspect(name)["State"]
    if state["Running"] and process_start_time(state["Pid"]) == 0:
        # It ended since inspect looked, or inspect lied: asked again, it must know.
        assert not pydock.inspect(name)["State"]["Running"], f"{name}: dead pid {state}"
    return bool(state["Running"])


def monitor_alive(pydock: Pydock, name: str) -> bool:
    """Whether the container's monitor, if it has one, lives: it may yet record the exit."""
    try:
        record = StateStore(pydock.root).load(name)
    except PydockError:  # no record left: the monitor of an --rm container removed it
        return False
    return lifecycle.monitor_alive(record)


def settled_row(pydock: Pydock, name: str, timeout: float = 20) -> dict[str, Any] | None:
    """The container's ps -a row once nothing runs in it any more and its monitor, if one
    survived, has recorded the end (None: no record), checking on the way that "running"
    is only ever said of a live process."""
    deadline = time.monotonic() + timeout
    while True:
        # Asked first: once the monitor is gone, the row read next is the last word.
        recording = monitor_alive(pydock, name)
        row = ps_rows(pydock).get(name)
        # inspect checks the pid of what ps says is running (ps shows none).
        if row is None or not (recording or row["State"] == "running"
                               or said_running(pydock, name)):
            return row
        assert time.monotonic() < deadline, f"{name} still running after {timeout}s"
        time.sleep(0.05)


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 20) -> T:
    """Probe until done (the monitor may still be at work); the last probe's result."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() > deadline:
            return result
        time.sleep(0.05)


def crash(pydock: Pydock, step: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``pydock ARGS`` with the failpoint ``step`` set; it must not end normally."""
    result = pydock(*args, env={"PYDOCK_FAILPOINT": step})
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode in (-signal.SIGKILL, 125), (result.returncode, result.stderr)
    return result


def container_id(pydock: Pydock, name: str) -> str:
    state = json.loads((pydock.root / "containers" / name / "state.json").read_text())
    return str(state["id"])


@pytest.mark.parametrize(("step", "driver", "options"), [
    pytest.param(step, *config.values, id=f"{step}-{config.id}", marks=config.marks)
    for step in RUN_STEPS for config in CONFIGS
    if step != "run.cgroup-created" or config.values[1]])  # no cgroup without limits
def test_run_killed_at_any_step(pydock: Pydock, step: str, driver: str,
                                options: tuple[str, ...]) -> None:
    before = warm_up(pydock, driver, options)
    crash(pydock, step, "run", "--name", "victim", "--storage", driver, *options, *COMMAND)
    ids = [container_id(pydock, "victim")]
    row = settled_row(pydock, "victim")
    assert row is not None and row["Status"].startswith(RUN_STEPS[step]), row
    assert pydock.ok("rm", "-f", "victim") == "victim\n"
    assert_cleaned(pydock, before, ids)


@pytest.mark.parametrize(("driver", "options"), CONFIGS[:1] + CONFIGS[-1:])
@pytest.mark.parametrize("step", REMOVAL_STEPS)
def test_monitor_killed_while_removing_an_rm_container(
        pydock: Pydock, driver: str, options: tuple[str, ...], step: str) -> None:
    before = warm_up(pydock, driver, options)
    records = pydock.root / "containers"
    crash(pydock, step, "run", "--rm", "--name", "victim", "--storage", driver, *options,
          *COMMAND)
    ids = [json.loads(p.read_text())["id"] for p in records.glob("*/state.json")]
    assert len(ids) == 1, "the crash kept no record, not even a hidden one"
    row = settled_row(pydock, "victim")
    if step == "rm.record-renamed":
        assert row is None  # only the hidden .rm-* directory is left: prune's job
        assert pydock.ok("prune") == ""
    else:
        assert row is not None and row["Status"] == "Exited (unknown)", row
        assert pydock.ok("rm", "-f", "victim") == "victim\n"
    assert_cleaned(pydock, before, ids)


@pytest.mark.parametrize(("driver", "options"), CONFIGS[:1] + CONFIGS[-1:])
@pytest.mark.parametrize("step", REMOVAL_STEPS)
def test_rm_killed_at_any_step(pydock: Pydock, driver: str, options: tuple[str, ...],
                               step: str) -> None:
    before = warm_up(pydock, driver, options)
    pydock.ok("run", "-d", "--name", "victim", "--storage", driver, *options, "sleep", "60")
    ids = [container_id(pydock, "victim")]
    crash(pydock, step, "rm", "-f", "victim")
    # The container was killed before the crash; its monitor records that.
    row = eventually(lambda: settled_row(pydock, "victim"),
                     lambda row: row is None or row["Status"] != "Exited (unknown)")
    if step == "rm.record-renamed":
        assert row is None
        assert pydock.ok("prune") == ""
    else:
        assert row is not None and row["Status"].startswith("Exited (137)"), row
        assert pydock.ok("rm", "-f", "victim") == "victim\n"
    assert_cleaned(pydock, before, ids)


@pytest.mark.parametrize("options", [pytest.param((), id="plain"),
                                     pytest.param(LIMITED, id="m", marks=NEEDS_MEMORY_CGROUP)])
def test_a_container_whose_monitor_was_killed_is_running_then_exited(
        pydock: Pydock, options: tuple[str, ...]) -> None:
    before = warm_up(pydock, "overlay", options)
    for name in ("orphan", "doomed"):
        pydock.ok("run", "-d", "--name", name, *options, "sleep", "60")
        record = json.loads((pydock.root / "containers" / name / "state.json").read_text())
        os.kill(record["monitor_pid"], signal.SIGKILL)
    ids = [container_id(pydock, name) for name in ("orphan", "doomed")]
    time.sleep(0.2)  # time enough for a wrong answer to show
    rows = ps_rows(pydock)
    assert [rows[n]["State"] for n in ("orphan", "doomed")] == ["running", "running"]
    assert process_start_time(pydock.inspect("orphan")["State"]["Pid"]) != 0
    # Without its monitor the container goes on, and so do kill and rm -f.
    assert pydock.ok("kill", "orphan") == "orphan\n"
    row = settled_row(pydock, "orphan")
    assert row is not None and row["Status"] == "Exited (unknown)"
    pid = pydock.inspect("doomed")["State"]["Pid"]
    assert pydock.ok("rm", "-f", "doomed") == "doomed\n"
    assert process_start_time(pid) == 0
    assert pydock.ok("rm", "orphan") == "orphan\n"
    assert_cleaned(pydock, before, ids)


@pytest.mark.parametrize("how", ["import", "load"])
def test_image_import_killed_before_its_layer_is_in_place(pydock: Pydock, tmp_path: Path,
                                                          how: str) -> None:
    archive = tmp_path / "image.tar"
    if how == "import":
        busybox_tarball(tmp_path, "image.tar")
        args = ("image", "import", str(archive), "crashed")
    else:
        pydock.ok("image", "save", "pydock/default", "-o", str(archive))
        args = ("image", "load", "-i", str(archive))
    layers_before = sorted(os.listdir(pydock.root / "layers"))
    images_before = pydock.ok("image", "ls")
    crash(pydock, "image.layer-extracted", *args)
    assert any(n.startswith(".tmp-") for n in os.listdir(pydock.root / "layers"))
    assert pydock.ok("image", "ls") == images_before
    assert pydock.ok("prune") == ""
    assert sorted(os.listdir(pydock.root / "layers")) == layers_before


def test_prune_removes_leftovers_of_dead_owners_only(pydock: Pydock) -> None:
    before = warm_up(pydock, "overlay", ())
    records, layers = pydock.root / "containers", pydock.root / "layers"
    own = f"{os.getpid()}-{process_start_time(os.getpid())}-0123456789abcdef"
    gone = f"{os.getpid()}-{process_start_time(os.getpid()) + 1}-0123456789abcdef"
    alive = [records / f".new-{own}", records / f".rm-{own}", layers / f".tmp-{own}"]
    dead = [records / f".new-{gone}", records / f".rm-{gone}", layers / f".tmp-{gone}",
            layers / f".rm-{gone}", records / ".new-0123456789abcdef"]
    for path in alive + dead:
        (path / "sub").mkdir(parents=True)
        (path / "sub" / "file").write_text("x")
    assert pydock.ok("prune") == ""
    assert [p for p in alive + dead if p.exists()] == alive
    for path in alive:
        subprocess.run(["rm", "-r", str(path)], check=True)
    assert storage_listing(pydock.root) == before


@pytest.mark.parametrize("driver", ["overlay", "copy"])
def test_prune_removes_the_storage_of_a_record_that_vanished(pydock: Pydock,
                                                             driver: str) -> None:
    before = warm_up(pydock, driver, ())
    pydock.ok("run", "-d", "--name", "kept", "--storage", driver, "sleep", "60")
    with_kept = storage_listing(pydock.root)
    pydock.ok("run", "--name", "lost", "--storage", driver, "true")
    lost = pydock.root / "storage" / driver / container_id(pydock, "lost")
    subprocess.run(["rm", "-r", str(pydock.root / "containers" / "lost")], check=True)
    assert lost.exists()
    assert pydock.ok("prune") == ""  # kept runs
    assert storage_listing(pydock.root) == with_kept
    assert pydock.ok("rm", "-f", "kept") == "kept\n"
    assert storage_listing(pydock.root) == before


# -- corrupt records ----------------------------------------------------------------------

def damage(pydock: Pydock, name: str, how: str) -> None:
    path = pydock.root / "containers" / name / "state.json"
    text = path.read_text()
    if how == "truncated":
        path.write_text(text[:len(text) // 2])
    elif how == "mistyped":  # valid JSON, the pid intact, a field of the wrong type
        record = json.loads(text)
        record["spec"]["process"]["args"] = 42
        path.write_text(json.dumps(record, indent=1))
    else:
        path.write_bytes(b"\x00" * 100)


@pytest.mark.parametrize("driver", ["overlay", "copy"])
@pytest.mark.parametrize("how", ["truncated", "mistyped", "garbage"])
def test_a_corrupt_record_is_reported_and_rm_f_cleans_up_after_it(
        pydock: Pydock, driver: str, how: str) -> None:
    before = warm_up(pydock, driver, ())
    pydock.ok("run", "--name", "healthy", "--storage", driver, "true")
    with_healthy = storage_listing(pydock.root)
    pydock.ok("run", "--name", "broken", "--storage", driver, "true")
    ids = [container_id(pydock, "broken")]
    damage(pydock, "broken", how)
    rows = ps_rows(pydock)
    assert (rows["broken"]["Status"], rows["broken"]["State"]) == ("corrupt record", "corrupt")
    assert rows["broken"]["ID"] == ("" if how == "garbage" else ids[0][:12])
    assert rows["healthy"]["State"] == "exited"
    for args in (("inspect", "broken"), ("rm", "broken"), ("logs", "broken")):
        pydock.refused(*args, match="corrupt record")
    assert pydock.ok("prune") == "healthy\n"  # a corrupt record might be running: kept
    assert "broken" in ps_rows(pydock)
    assert pydock.ok("rm", "-f", "broken") == "broken\n"
    assert_cleaned(pydock, before, ids)
    assert with_healthy != before


def test_rm_f_kills_the_process_a_corrupt_record_still_names(pydock: Pydock) -> None:
    before = warm_up(pydock, "overlay", ())
    pydock.ok("run", "-d", "--name", "broken", "sleep", "60")
    pid = pydock.inspect("broken")["State"]["Pid"]
    ids = [container_id(pydock, "broken")]
    damage(pydock, "broken", "mistyped")
    assert ps_rows(pydock)["broken"]["Status"] == "corrupt record"
    assert pydock.ok("rm", "-f", "broken") == "broken\n"
    assert process_start_time(pid) == 0
    assert_cleaned(pydock, before, ids)


def test_image_rm_counts_a_corrupt_record_as_a_user(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "broken", "true")
    damage(pydock, "broken", "garbage")
    pydock.refused("image", "rm", "pydock/default", match="in use by container(s) broken")
