"""containerd's ``ctr run --rm`` on pydock-overlay beside its built-in overlayfs snapshotter,
and what each call of ``pydock snapshotter serve`` costs.

    sudo .venv/bin/python benchmarks/containerd_run.py [--repeat 11] [--megabytes 250]
        [--calls 50]

One private containerd 1.6 (pydock.testing.containerd: no CRI, everything in a directory
of its own, stopped and removed after) with ``pydock-overlay`` as a proxy plugin. Two images
go into it, each once per snapshotter (``ctr images import --snapshotter``, in a namespace
per snapshotter):

* small: pydock's embedded default image as ``pydock image save`` writes it (busybox, 2 MB);
* large: the same layer and four more of random-content files of 1-4 MiB, ``--megabytes``
  in all, generated from a fixed seed (the same bytes every run).

Then ``ctr run --rm --snapshotter S IMAGE ID /bin/true`` is timed, fork to exit, for both
snapshotters on both images, interleaved in shuffled rounds after a warm-up round
(compare_measure's rounds); median, min and max. The issue's target: pydock-overlay within
1.5x of overlayfs.

Per call: a second serve on a root of its own, no containerd in between (containerd's garbage
collection would remove snapshots it does not know), driven by a gRPC client through the
generated stubs: ``Stat`` (the round trip's floor), ``Prepare`` on a chain of one committed
layer and of five, ``Commit`` of an active snapshot holding one 1 MiB file written into its
upper directory, and ``Remove`` of what was committed; ``--calls`` of each, median and spread.
It needs the venv's python: it imports pydock.testing and grpc.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_commands import note
from compare_measure import Series, measure

from pydock.testing.cli import PYDOCK
from pydock.testing.containerd import Containerd, private_containerd
from pydock.testing.layers import default_image_root
from pydock.testing.snapshotter import Served

TARGET = 1.5
DATA_SEED = 15
SNAPSHOTTERS = {"pydock-overlay": "pydock", "overlayfs": "builtin"}  # -> namespace


def small_archive(work: Path) -> Path:
    root = default_image_root(work / "image-root")
    archive = work / "small.tar"
    subprocess.run([PYDOCK, "--root", str(root), "image", "save", "-o", str(archive),
                    "pydock/default"], check=True)
    shutil.rmtree(root)
    return archive


def large_archive(work: Path, small: Path, megabytes: int) -> Path:
    """A docker archive of the small image's layer and four layers of random files."""
    with tarfile.open(small) as saved:
        [entry] = json.load(saved.extractfile("manifest.json"))  # type: ignore[arg-type]
        base = saved.extractfile(entry["Layers"][0]).read()  # type: ignore[union-attr]
    rng = random.Random(DATA_SEED)
    layers, per_layer = [base], (megabytes << 20) // 4
    for number in range(4):
        buffer, written = io.BytesIO(), 0
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            while written < per_layer:
                size = min(rng.randint(1 << 20, 4 << 20), per_layer - written)
                info = tarfile.TarInfo(f"data/{number}/{written:012d}")
                info.size, info.mtime = size, 1_700_000_000
                tar.addfile(info, io.BytesIO(rng.randbytes(size)))
                written += size
        layers.append(buffer.getvalue())
    diff_ids = [f"sha256:{hashlib.sha256(layer).hexdigest()}" for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    archive = work / "large.tar"
    with tarfile.open(archive, "w") as tar:
        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for diff_id, layer in zip(diff_ids, layers, strict=True):
            add(f"{diff_id[7:]}/layer.tar", layer)
        add("config.json", config)
        add("manifest.json", json.dumps([{
            "Config": "config.json", "RepoTags": ["bench/large:1"],
            "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]}]).encode())
    return archive


def run_series(ctd: Containerd, images: dict[str, str], repeat: int) -> list[Series]:
    series = []
    for image, reference in images.items():
        for snapshotter, namespace in SNAPSHOTTERS.items():
            def command(i: int, snapshotter: str = snapshotter, namespace: str = namespace,
                        reference: str = reference) -> list[str]:
                return ["ctr", "--address", str(ctd.address), "-n", namespace, "run", "--rm",
                        "--snapshotter", snapshotter, reference, f"bench-{i}", "/bin/true"]
            series.append(Series(image, snapshotter, command, repeat))
    return series


def call_latencies(serve: Served, calls: int) -> dict[str, list[float]]:
    """Seconds per gRPC call, by call, against ``serve`` alone."""
    from pydock.core.snapshotter.api import snapshots_pb2 as pb

    times: dict[str, list[float]] = {}

    def timed(what: str, call: Callable[[Any], Any], request: Any) -> Any:
        start = time.perf_counter()
        result = call(request)
        times.setdefault(what, []).append(time.perf_counter() - start)
        return result

    payload = random.Random(DATA_SEED).randbytes(1 << 20)
    stub, name = serve.stub(), f"pydock-{serve.driver}"

    def commit_with_file(key: str, parent: str, committed: str, what: str) -> None:
        mounts = stub.Prepare(pb.PrepareSnapshotRequest(snapshotter=name, key=key,
                                                        parent=parent)).mounts
        (upper(mounts) / "file").write_bytes(payload)
        timed(what, stub.Commit, pb.CommitSnapshotRequest(snapshotter=name, name=committed,
                                                          key=key))

    commit_with_file("base-0", "", "layer-0", "setup")
    for depth in range(1, 5):
        commit_with_file(f"base-{depth}", f"layer-{depth - 1}", f"layer-{depth}", "setup")
    for i in range(calls):
        timed("Stat", stub.Stat, pb.StatSnapshotRequest(snapshotter=name, key="layer-0"))
        for parent, what in (("layer-0", "Prepare (1 layer)"),
                             ("layer-4", "Prepare (5 layers)")):
            timed(what, stub.Prepare, pb.PrepareSnapshotRequest(
                snapshotter=name, key=f"{parent}-active-{i}", parent=parent))
        commit_with_file(f"active-{i}", "layer-4", f"committed-{i}", "Commit (1 MiB file)")
        timed("Remove (committed)", stub.Remove, pb.RemoveSnapshotRequest(
            snapshotter=name, key=f"committed-{i}"))
    del times["setup"]
    return times


def upper(mounts: Any) -> Path:
    """An overlay mount's upper directory, where what a container writes lands."""
    [mount] = mounts
    options = dict(option.partition("=")[::2] for option in mount.options)
    return Path(options["upperdir"])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def report(series: list[Series], imports: dict[tuple[str, str], float],
           latencies: dict[str, list[float]], images: dict[str, str], sizes: dict[str, int],
           args: argparse.Namespace, started: float) -> None:
    print(f"- containerd_run, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
          f"`ctr run --rm` x{args.repeat} per figure after 1 warm-up round, "
          f"{args.calls} calls of each")
    print("- " + "; ".join(f"{image}: {sizes[image] / 1e6:.1f} MB archive"
                           for image in images))
    print("\n**`ctr run --rm IMAGE ID /bin/true`, ms (fork to exit)**\n")
    print("| image | snapshotter | median | min | max | runs |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    medians: dict[tuple[str, str], float] = {}
    for one in series:
        if one.error:
            print(f"| {one.image} | {one.label} | failed: {one.error} | | | |")
            continue
        medians[one.image, one.label] = statistics.median(one.times)
        print(f"| {one.image} | {one.label} | {ms(medians[one.image, one.label])} | "
              f"{ms(min(one.times))} | {ms(max(one.times))} | {len(one.times)} |")
    print(f"\n**Target: pydock-overlay / overlayfs <= {TARGET}x**\n")
    print("| image | ratio | result |\n| --- | ---: | --- |")
    for image in images:
        if (image, "pydock-overlay") in medians and (image, "overlayfs") in medians:
            ratio = medians[image, "pydock-overlay"] / medians[image, "overlayfs"]
            print(f"| {image} | {ratio:.2f}x | {'PASS' if ratio <= TARGET else 'FAIL'} |")
        else:
            print(f"| {image} | - | n/a |")
    print("\n**`ctr images import --snapshotter S ARCHIVE`, ms (once each)**\n")
    print("| image | " + " | ".join(SNAPSHOTTERS) + " |\n| --- |"
          + " ---: |" * len(SNAPSHOTTERS))
    for image in images:
        print(f"| {image} | " + " | ".join(ms(imports[image, s]) for s in SNAPSHOTTERS) + " |")
    print("\n**`pydock snapshotter serve`, ms per gRPC call (one client, no containerd)**\n")
    print("| call | median | min | max | calls |\n| --- | ---: | ---: | ---: | ---: |")
    for what, times in latencies.items():
        print(f"| {what} | {ms(statistics.median(times))} | {ms(min(times))} | "
              f"{ms(max(times))} | {len(times)} |")
    print(f"\n- the whole run took {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=11, help="counted runs per figure")
    parser.add_argument("--megabytes", type=int, default=250, help="the large image's size")
    parser.add_argument("--calls", type=int, default=50, help="gRPC calls of each kind")
    args = parser.parse_args()
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="pydock-ctd-bench-", dir="/var/tmp"))
    try:
        note("making the images")
        small = small_archive(work)
        archives = {"small": small, "large": large_archive(work, small, args.megabytes)}
        images = {"small": "docker.io/pydock/default:latest",
                  "large": "docker.io/bench/large:1"}
        imports: dict[tuple[str, str], float] = {}
        with private_containerd({"overlay": work / "pydock-root"}) as ctd:
            for snapshotter, namespace in SNAPSHOTTERS.items():
                for image, archive in archives.items():
                    note(f"importing {archive.name} into {snapshotter}")
                    start = time.perf_counter()
                    ctd.ctr("images", "import", "--snapshotter", snapshotter, str(archive),
                            namespace=namespace, timeout=600)
                    imports[image, snapshotter] = time.perf_counter() - start
            series = run_series(ctd, images, args.repeat)
            measure(series)
            # The latencies' own serve: its socket beside containerd's, short enough.
            serve = Served(work / "grpc-root", ctd.directory / "grpc.sock", "overlay").start()
            try:
                note("timing gRPC calls")
                latencies = call_latencies(serve, args.calls)
            finally:
                serve.stop()
        sizes = {name: path.stat().st_size for name, path in archives.items()}
        report(series, imports, latencies, images, sizes, args, started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
