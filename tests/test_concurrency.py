"""Commands racing each other on one storage root: parallel runs, one name claimed by
many, ``rm -f`` against ``run``, ``image rm`` against ``run``. Whatever the interleaving:
every command ends with its own result or one clear line, never a traceback, and what is
left afterwards is what the winners made, nothing else.

The races are real and their timing is randomised; a failure prints the seed.
"""

from __future__ import annotations

import os
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    DRIVERS,
    LIMITED,
    NEEDS_MEMORY_CGROUP,
    assert_cleaned,
    busybox_tarball,
    storage_entries,
    storage_listing,
    warm_up,
)

from pydock.core.containers import spec
from pydock.core.containers.spec import RunOptions
from pydock.core.containers.state import ContainerRecord, StateStore, new_container_id
from pydock.testing.cli import TIMEOUT, Pydock

ROUNDS = 10


def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=TIMEOUT)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


@pytest.fixture
def rng() -> random.Random:
    seed = int.from_bytes(os.urandom(4))
    print(f"random seed: {seed}")  # shown by pytest when the test fails
    return random.Random(seed)


@pytest.mark.parametrize("driver", DRIVERS)
def test_parallel_runs_with_distinct_names_all_succeed(pydock: Pydock, driver: str) -> None:
    before = warm_up(pydock, driver, ())
    names = [f"par{i}" for i in range(8)]
    procs = [pydock.popen("run", "--name", name, "--storage", driver, "sh", "-c",
                          f"echo {name}") for name in names]
    assert [finish(proc) for proc in procs] == [(0, f"{name}\n", "") for name in names]
    assert pydock.container_names() == names
    assert len(storage_entries(pydock.root)) == len(names)
    assert [pydock.inspect(n)["State"]["ExitCode"] for n in names] == [0] * len(names)
    assert pydock.ok("rm", *names) == "".join(f"{name}\n" for name in names)
    assert storage_listing(pydock.root) == before


def test_parallel_runs_without_names_all_succeed(pydock: Pydock) -> None:
    # Generated names are drawn from a few hundred: leave a single one free, and most
    # of the parallel runs draw it, while only one of them can have it.
    from pydock.core.containers.state import _ADJECTIVES, _SURNAMES

    taken = [f"{a}_{s}" for a in _ADJECTIVES for s in _SURNAMES][1:]
    for name in taken:
        (pydock.root / "containers" / name).mkdir(parents=True)
    procs = [pydock.popen("run", "-d", "true") for _ in range(8)]
    results = [finish(proc) for proc in procs]
    assert [code for code, _, _ in results] == [0] * 8, results
    names = {pydock.inspect(out.strip())["Name"] for _, out, _ in results}
    assert len(names) == 8 and not names & set(taken)


def test_parallel_runs_with_one_name_have_exactly_one_winner(pydock: Pydock) -> None:
    before = warm_up(pydock, "overlay", ())
    procs = [pydock.popen("run", "--name", "race", "sh", "-c", "echo won") for _ in range(8)]
    results = sorted(finish(proc) for proc in procs)
    assert results[0] == (0, "won\n", "")
    # The losers leave nothing: no record, no storage, no hidden half-made record.
    assert results[1:] == [(125, "", "pydock: container name 'race' is already in use\n")] * 7
    assert pydock.container_names() == ["race"]
    assert len(storage_entries(pydock.root)) == 1
    assert os.listdir(pydock.root / "containers") == ["race"]
    assert pydock.ok("rm", "race") == "race\n"
    assert storage_listing(pydock.root) == before


@pytest.mark.parametrize("options", [pytest.param((), id="plain"),
                                     pytest.param(LIMITED, id="m", marks=NEEDS_MEMORY_CGROUP)])
def test_rm_f_racing_run_leaves_nothing(pydock: Pydock, rng: random.Random,
                                        options: tuple[str, ...]) -> None:
    before = warm_up(pydock, "overlay", options)
    outcomes = set()
    for _ in range(ROUNDS):
        run = pydock.popen("run", "--name", "contested", *options, "sleep", "0.3")
        time.sleep(rng.uniform(0, 0.5))
        rm = pydock("rm", "-f", "contested")
        assert "Traceback" not in rm.stderr, rm.stderr
        code, _, err = finish(run)
        if rm.returncode == 0:  # rm -f won: the container was killed, or had ended
            assert code in (0, 137), err
        else:  # before the record existed: the run goes on undisturbed
            assert rm.stderr == "pydock: no such container: contested\n"
            assert code == 0, err
        outcomes.add((rm.returncode, code))
        pydock("rm", "-f", "contested")  # the run may have come after the race
        assert_cleaned(pydock, before, [])
    print(f"outcomes (rm -f, run): {sorted(outcomes)}")


@pytest.fixture
def racer_tarball(tmp_path: Path) -> Path:
    return busybox_tarball(tmp_path, "racer.tar")


def test_image_rm_racing_run_never_leaves_a_container_without_layers(
        pydock: Pydock, rng: random.Random, racer_tarball: Path) -> None:
    before = warm_up(pydock, "overlay", ())
    layers_before = sorted(os.listdir(pydock.root / "layers"))
    outcomes = set()
    for _ in range(ROUNDS):
        pydock.ok("image", "import", str(racer_tarball), "racer")
        run = pydock.popen("run", "--name", "user", "--image", "racer", "true")
        time.sleep(rng.uniform(0, 0.4))
        rm = pydock("image", "rm", "racer")
        assert "Traceback" not in rm.stderr, rm.stderr
        code, _, err = finish(run)
        if code == 0:  # run won: the image stays while the container uses it
            assert rm.returncode == 125
            assert "image racer:latest is in use by container(s) user" in rm.stderr
            lower = pydock.inspect("user")["GraphDriver"]["Data"]["LowerDir"]
            assert all(Path(layer).is_dir() for layer in lower.split(":"))
            assert pydock.ok("run", "--rm", "--image", "racer", "true") == ""
            pydock.ok("rm", "user")
            pydock.ok("image", "rm", "racer")
        else:  # image rm won: run fails as if the image had never been there
            assert (code, err) == (125, "pydock: no such image: racer:latest\n")
            assert rm.returncode == 0, rm.stderr
            assert pydock.container_names() == []
        outcomes.add(code)
        assert sorted(os.listdir(pydock.root / "layers")) == layers_before
        assert storage_listing(pydock.root) == before
    print(f"run's outcomes: {sorted(outcomes)}")


@pytest.mark.quick
def test_a_lock_waited_for_on_a_deleted_record_is_taken_again_on_the_new_one(
        tmp_path: Path) -> None:
    # The one race above that timing alone cannot reach: rm waits for a record's lock,
    # the record is deleted and its name taken again, and rm must then wait for the new
    # record's lock (held by its creator until it runs), not act on the old one.
    store = StateStore(tmp_path)

    def record() -> ContainerRecord:
        return ContainerRecord(
            id=new_container_id(), name="x", driver="overlay", image="i", image_id="i",
            layers=[], spec=spec.build(RunOptions(command=("true",)), {}, "x", "/x"))

    first = record()
    first_lock = store.create(first)
    seen: list[str] = []

    def remove() -> None:
        with store.locked("x"):
            seen.append(store.load("x").id)

    waiter = threading.Thread(target=remove)
    waiter.start()
    time.sleep(0.2)  # waiting for the first record's lock
    store.delete("x")
    second = record()
    second_lock = store.create(second)
    os.close(first_lock)
    time.sleep(0.2)
    assert seen == []  # still waiting: the second record's creator holds its lock
    os.close(second_lock)
    waiter.join(timeout=10)
    assert seen == [second.id]
