"""pydock bench through the CLI: the matrix, its formats, bad input, and nothing left behind.

Every run uses a tiny large image (8 MB), two repetitions and three containers for scale, so
a whole bench takes seconds. No test asserts a time: times depend on the machine and its load.
What the tests hold bench to is the shape of the results (every driver x image x measurement,
min <= median <= max, positive), the disk figures, which follow from what each driver stores,
and that bench leaves nothing behind whichever way it ends.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import pty
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import tag_with_config

from pydock.core.bench import image as bench_image
from pydock.core.bench import run as bench
from pydock.core.bench.run import MEASUREMENTS, BenchOptions, run_bench
from pydock.core.ids import is_container_id
from pydock.core.images.store import DEFAULT_IMAGE, ImageStore
from pydock.core.progress import StatusLine
from pydock.testing.cli import PYDOCK, Pydock, mounts_under

SMALL = ("--large-size", "8", "--repeat", "2", "--scale", "3")
LARGE = "pydock/bench-large:8mb"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def available_drivers(pydock: Pydock) -> list[str]:
    rows = json.loads(pydock.ok("storage", "ls", "--format", "json"))["drivers"]
    return [row["Name"] for row in rows if row["Available"]]


def bench_json(pydock: Pydock, *args: str) -> dict[str, Any]:
    result = pydock("bench", "--format", "json", *SMALL, *args, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress off a terminal
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def container_dirs(root: Path) -> list[Path]:
    """Container directories in every driver's home, pydock run's and bench's (which bench
    may be deleting meanwhile)."""
    found = []
    for storage in (root / "storage", *(root / "bench").glob(".storage-*")):
        with contextlib.suppress(FileNotFoundError):
            for driver in os.listdir(storage):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    found += [storage / driver / name for name in os.listdir(storage / driver)
                              if is_container_id(name)]
    return found


def assert_nothing_left(pydock: Pydock) -> None:
    assert pydock.container_names() == []
    assert container_dirs(pydock.root) == []
    assert [p.name for p in (pydock.root / "bench").glob("*") if p.name != "lock"] == []
    assert mounts_under(pydock.root) == []


def results_by_key(data: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["driver"], r["image"], r["measurement"]): r for r in data["results"]}


@pytest.fixture(scope="module")
def full_bench(template_root: Path, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[Pydock, dict[str, Any]]:
    """One bench of every driver on both images, in JSON, shared by the tests that read it
    (the whole matrix is the slowest thing here), and the root it ran on."""
    root = tmp_path_factory.mktemp("full-bench") / "root"
    subprocess.run(["cp", "-a", str(template_root), str(root)], check=True)
    cli = Pydock(root)
    data = bench_json(cli)
    assert_nothing_left(cli)
    return cli, data


def test_json_has_every_driver_image_and_measurement(
        full_bench: tuple[Pydock, dict[str, Any]]) -> None:
    pydock, data = full_bench
    drivers = available_drivers(pydock)
    assert data["drivers"][:3] == ["overlay", "copy", "bind"]
    assert sorted(data["drivers"]) == sorted(drivers)
    assert [image["reference"] for image in data["images"]] == [DEFAULT_IMAGE, LARGE]
    results = results_by_key(data)
    assert len(results) == len(drivers) * 2 * len(MEASUREMENTS)
    for driver in drivers:
        for image in (DEFAULT_IMAGE, LARGE):
            for measurement in MEASUREMENTS:
                result = results[(driver, image, measurement.key)]
                assert len(result["samples"]) == (1 if measurement.once else 2)
                # Times are positive. Disk may honestly be 0 where directories take no blocks
                # (btrfs, tmpfs): an overlay container is only directories.
                floor = 1 if measurement.unit == "ns" else 0
                assert floor <= result["min"] <= result["median"] <= result["max"], result
                assert result["unit"] == measurement.unit


def test_the_disk_figures_show_what_each_driver_stores(
        full_bench: tuple[Pydock, dict[str, Any]]) -> None:
    _, data = full_bench
    large = data["images"][1]
    assert large["write_target"] == bench_image.WRITE_TARGET
    assert large["size"] >= 8_000_000 and large["files"] >= 400 and large["layers"] == 2
    results = results_by_key(data)

    def median(driver: str, measurement: str) -> int:
        value: int = results[(driver, LARGE, measurement)]["median"]
        return value

    # overlay: three empty directories, until the first write copies the whole file up.
    assert median("overlay", "disk") < 100_000
    assert median("overlay", "disk_written") >= large["write_target_size"]
    # copy: a full copy of the image per container, and three containers hold three.
    assert median("copy", "disk") >= large["size"]
    assert median("copy", "scale_disk") >= 3 * large["size"]
    # bind: each container reports the one shared copy, which three containers hold once.
    assert median("bind", "disk") >= large["size"]
    assert median("bind", "scale_disk") < 2 * large["size"]


def test_table_shows_a_block_per_image_and_progress_on_a_terminal(pydock: Pydock) -> None:
    code, out, err = run_with_terminal_stderr(
        pydock, "bench", *SMALL, "--storage", "overlay,bind", "--image", DEFAULT_IMAGE)
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(rf"pydock bench on {pydock.root} \(\w+, kernel \S+, \d+ CPUs, load "
                        r"\d+\.\d\d\): 2 repetitions, median \(min-max\)", lines[0]), lines[0]
    assert lines[2].startswith(f"{DEFAULT_IMAGE}: ") and "writes go to /" in lines[2]
    assert re.fullmatch(r"MEASUREMENT +OVERLAY +BIND", lines[3])
    labels = [m.label.format(scale=3) for m in MEASUREMENTS]
    assert [line.split("  ")[0].strip() for line in lines[4:4 + len(labels)]] == labels
    assert re.search(r"\d+(\.\d+)? \(\d+(\.\d+)?-\d+(\.\d+)?\) (ns|us|ms|s)$", lines[4])
    assert any(line.startswith("bind: its containers share storage: 3 of them hold")
               for line in lines)
    assert "\r" in err and "repetition 2/2" in err and "overlay on pydock/default" in err
    assert_nothing_left(pydock)


def test_markdown_has_a_table_per_image(pydock: Pydock) -> None:
    result = pydock("bench", "--format", "markdown", *SMALL, "--storage", "copy",
                    "--storage", "overlay", "--image", DEFAULT_IMAGE, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"### {DEFAULT_IMAGE}" in lines
    header = lines.index("| measurement | copy | overlay |")
    assert lines[header + 1] == "| --- | ---: | ---: |"
    rows = lines[header + 2:header + 2 + len(MEASUREMENTS)]
    assert all(row.startswith("| ") and row.count(" | ") == 2 for row in rows)
    assert rows[0].startswith("| prepare, first container | ")
    assert_nothing_left(pydock)



def test_an_image_with_an_entrypoint_is_measured_but_not_run(pydock: Pydock) -> None:
    # pydock run would run the entrypoint, with /bin/true as its argument: here it fails.
    tag_with_config(pydock, "entry", Entrypoint=["false"])
    data = bench_json(pydock, "--storage", "overlay", "--image", "entry")
    assert {r["measurement"] for r in data["results"]} == {
        m.key for m in MEASUREMENTS if m.key != "run"}
    assert data["notes"] == ["overlay on entry: run not measured: the image has an "
                             "Entrypoint, which would run instead of /bin/true"]
    assert_nothing_left(pydock)

BAD_BENCHES = [
    (["--storage", "nope"], "unknown storage driver 'nope'"),
    (["--storage", "overlay,nope"], "unknown storage driver 'nope'"),
    (["--storage", ""], "unknown storage driver ''"),
    (["--repeat", "0"], "Invalid value for '--repeat'"),
    (["--repeat", "two"], "Invalid value for '--repeat'"),
    (["--scale", "0"], "Invalid value for '--scale'"),
    (["--scale", "-3"], "Invalid value for '--scale'"),
    (["--large-size", "7"], "--large-size must be at least 8 (MB), got 7"),
    (["--image", "nope"], "no such image: nope:latest"),
    (["--format", "yaml"], "'yaml' is not one of"),
]


@pytest.mark.parametrize(("args", "message"), BAD_BENCHES)
def test_bad_input_is_one_line_125_and_does_nothing(pydock: Pydock, args: list[str],
                                                    message: str) -> None:
    pydock.refused("bench", *args, match=message)
    assert not (pydock.root / "bench").exists()
    assert "bench-large" not in pydock.ok("image", "ls")


def test_a_driver_that_cannot_work_here_is_refused_by_name(pydock: Pydock) -> None:
    rows = json.loads(pydock.ok("storage", "ls", "--format", "json"))["drivers"]
    unavailable = [row for row in rows if not row["Available"]]
    if not unavailable:
        pytest.skip("every installed driver works on this host")
    pydock.refused("bench", "--storage", unavailable[0]["Name"],
                   match=f"storage driver {unavailable[0]['Name']!r} is not available here")
    assert not (pydock.root / "bench").exists()


def test_help_states_the_defaults(pydock: Pydock) -> None:
    help_text = " ".join(pydock.ok("bench", "--help").split())
    for default in ("--repeat INTEGER RANGE Repetitions of each measurement, shown as "
                    "median (min-max). [default: 3; x>=1]", "[default: 50; x>=1]",
                    "[default: 256]", "[default: table]"):
        assert default in help_text


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="matplotlib is installed here")
def test_plot_without_matplotlib_is_refused_before_any_work(pydock: Pydock,
                                                            tmp_path: Path) -> None:
    pydock.refused("bench", "--plot", str(tmp_path / "bench.png"), match=(
        "--plot needs matplotlib, which is not installed: pip install 'pydock[plot]'"))
    assert not (pydock.root / "bench").exists()
    assert not (tmp_path / "bench.png").exists()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs the plot extra: pip install 'pydock[plot]'")
def test_plot_draws_a_png(pydock: Pydock, tmp_path: Path) -> None:
    plot = tmp_path / "bench.png"
    result = pydock("bench", *SMALL, "--storage", "overlay,copy", "--plot", str(plot),
                    timeout=600)
    assert result.returncode == 0, result.stderr
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert_nothing_left(pydock)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_an_interrupted_bench_removes_all_it_created(pydock: Pydock, sig: int) -> None:
    process = start_long_bench(pydock)
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines()[-1] in ("pydock: aborted", "pydock: interrupted")
    assert_nothing_left(pydock)


def test_what_a_killed_bench_left_is_removed_by_the_next(pydock: Pydock) -> None:
    process = start_long_bench(pydock)
    process.kill()
    process.communicate(timeout=60)
    assert container_dirs(pydock.root) != []  # SIGKILL left its containers
    pydock.ok("bench", *SMALL, "--storage", "overlay", "--image", DEFAULT_IMAGE)
    assert_nothing_left(pydock)


def test_what_a_killed_bench_left_is_removed_by_prune(pydock: Pydock) -> None:
    pydock.ok("bench", *SMALL, "--storage", "copy", "--image", DEFAULT_IMAGE)
    before = sorted(str(p.relative_to(pydock.root)) for p in pydock.root.rglob("*"))
    process = start_long_bench(pydock)
    process.kill()
    process.communicate(timeout=60)
    assert container_dirs(pydock.root) != []  # SIGKILL left its containers
    assert pydock.ok("prune") == ""
    assert sorted(str(p.relative_to(pydock.root)) for p in pydock.root.rglob("*")) == before


def test_one_bench_at_a_time_per_root(pydock: Pydock) -> None:
    (pydock.root / "bench").mkdir()
    with open(pydock.root / "bench" / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        pydock.refused("bench", *SMALL, "--image", DEFAULT_IMAGE,
                       match=f"another pydock bench is running on {pydock.root}")


def test_scale_stops_short_of_filling_the_disk(pydock: Pydock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    # Asking for more free space than any disk has stands in for a disk about to fill up.
    monkeypatch.setattr(bench, "_FREE_RESERVE", 1 << 62)
    run = run_bench(pydock.root, BenchOptions(drivers=("overlay",), images=(DEFAULT_IMAGE,),
                                              repeat=1, scale=3))
    assert run.notes == [f"overlay on {DEFAULT_IMAGE}: scale stopped at 0 of 3 containers, to "
                         f"leave at least {(1 << 62) >> 30} GiB free"]
    assert {r.measurement for r in run.results} == {
        m.key for m in MEASUREMENTS if not m.once}
    assert_nothing_left(pydock)


def test_the_large_image_is_the_same_on_every_build_and_built_once(
        pydock: Pydock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = ImageStore(pydock.root), ImageStore(tmp_path / "other")
    second.root.mkdir()
    subprocess.run(["cp", "-a", str(first.root / "layers"), str(first.root / "images"),
                    str(second.root)], check=True)
    built = [bench_image.large_image(store, store.resolve(DEFAULT_IMAGE), 8, StatusLine())
             for store in (first, second)]
    assert built[0].id == built[1].id
    assert built[0].names == (LARGE,)

    def build_again(*_args: object) -> None:
        raise AssertionError("the large image was built a second time")

    monkeypatch.setattr(bench_image, "write_data_layer", build_again)
    again = bench_image.large_image(first, first.resolve(DEFAULT_IMAGE), 8, StatusLine())
    assert again.id == built[0].id


def test_the_default_large_image_is_large() -> None:
    files = bench_image.plan(256)
    assert len(files) >= 8000
    assert sum(f.size for f in files) >= 250_000_000
    assert max(f.size for f in files) >= 20_000_000
    assert files == bench_image.plan(256)  # the same seed, the same files


def start_long_bench(pydock: Pydock) -> subprocess.Popen[str]:
    """A bench busy creating many copy containers, once it has some on disk."""
    process = pydock.popen("bench", "--storage", "copy", "--image", DEFAULT_IMAGE,
                           "--repeat", "1", "--scale", "10000")
    deadline = time.monotonic() + 60
    while len(container_dirs(pydock.root)) < 3:
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "bench created no containers within 60 s"
        time.sleep(0.05)
    return process


def run_with_terminal_stderr(pydock: Pydock, *args: str) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit status, stdout, what the terminal
    got)."""
    master, slave = pty.openpty()
    process = subprocess.Popen([PYDOCK, "--root", str(pydock.root), *args], text=True,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                               env=pydock.env)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: every process holding the terminal has closed it
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert process.stdout is not None
    out = process.stdout.read()
    return process.wait(timeout=60), out, b"".join(chunks).decode()
