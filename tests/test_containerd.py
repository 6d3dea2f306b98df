"""containerd runs containers on pydock's drivers through ``pydock snapshotter serve``.

Real components end to end: Debian's containerd 1.6 with one proxy plugin per driver
(:mod:`pydock.testing.containerd`), archives written by ``pydock image save`` (docker and
OCI) and by ``podman save``, ``ctr`` as an operator types it. One containerd serves the
module (each test has a namespace of its own in it); the tests that stop or kill a serve get
a containerd of their own, so that no other test sees it go.

What a container sees is checked through its files: one from a lower layer, one a higher
layer deleted (a whiteout that containerd's applier writes into a snapshot and the serve's
Commit has to turn into a layer), one a previous container wrote.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import (
    DRIVERS,
    Layer,
    busybox_rootfs,
    docker_archive,
    load_layered,
    make_layer,
    private_podman,
)

from pydock.testing.cli import Pydock
from pydock.testing.containerd import (
    Containerd,
    backend_snapshots,
    have_containerd,
    private_containerd,
)

pytestmark = [pytest.mark.needs_root,
              pytest.mark.skipif(not have_containerd(), reason="containerd is not installed "
                                 "(scripts/setup.sh installs Debian's)")]

DEFAULT = "docker.io/pydock/default:latest"
LAYERED = "docker.io/library/layered:1"
# layered:1 and a committed layer that deletes /etc/greeting and adds /added.txt.
WHITEOUT = "docker.io/library/layered-rm:1"
# Inside the whiteout image: the lower layer's file, the deleted one gone, the added one.
WHITEOUT_CHECK = ("sh", "-c", "cat /top.txt /added.txt; test -e /etc/greeting || echo gone")
WHITEOUT_SEEN = "top layer\nadded\ngone\n"


@pytest.fixture(scope="module")
def archives(template_root: Path, tmp_path_factory: pytest.TempPathFactory,
             layers: list[Layer]) -> dict[str, Path]:
    """Archives ``pydock image save`` wrote: the default image, the layered image of
    tests/conftest.py's ``image`` fixture, and that image with a layer ``pydock commit`` made
    from a container that deleted a file of a lower layer, as docker archives; the last also
    as an OCI layout tar."""
    work = tmp_path_factory.mktemp("archives")
    pydock = Pydock(work / "root")
    subprocess.run(["cp", "-a", str(template_root), str(pydock.root)], check=True)
    load_layered(pydock, work, layers, "layered:1")
    pydock.ok("run", "--name", "w", "--image", "layered:1", "sh", "-c",
              "rm /etc/greeting && echo added > /added.txt")
    pydock.ok("commit", "w", "layered-rm:1")
    pydock.ok("rm", "w")
    saved = {}
    for name, reference, form in (("default", "pydock/default", "docker"),
                                  ("layered", "layered:1", "docker"),
                                  ("whiteout", "layered-rm:1", "docker"),
                                  ("whiteout-oci", "layered-rm:1", "oci")):
        saved[name] = work / f"{name}.tar"
        pydock.ok("image", "save", "--format", form, "-o", str(saved[name]), reference)
    return saved


@pytest.fixture(scope="module")
def ctd(needs_root: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containerd]:
    """The module's containerd, with a snapshotter per built-in driver on roots of its own."""
    roots = tmp_path_factory.mktemp("ctd-roots")
    with private_containerd({driver: roots / driver for driver in DRIVERS}) as running:
        yield running


def snapshotter(driver: str) -> str:
    return f"pydock-{driver}"


def import_(ctd: Containerd, namespace: str, driver: str, *archives: Path) -> None:
    for archive in archives:
        ctd.ctr("images", "import", "--snapshotter", snapshotter(driver), str(archive),
                namespace=namespace)


def run(ctd: Containerd, namespace: str, driver: str, image: str, *command: str) -> str:
    """``ctr run --rm`` of ``command``: its output."""
    container = f"c{time.monotonic_ns()}"
    return ctd.ctr("run", "--rm", "--snapshotter", snapshotter(driver), image, container,
                   *command, namespace=namespace).stdout


def snapshots(ctd: Containerd, namespace: str, driver: str) -> dict[str, tuple[str, str]]:
    """``ctr snapshots ls``: key -> (parent, kind), as containerd's metadata has them."""
    out = ctd.ctr("snapshots", "--snapshotter", snapshotter(driver), "ls",
                  namespace=namespace).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return {row[0]: ("", row[1]) if len(row) == 2 else (row[1], row[2]) for row in rows}


@pytest.mark.parametrize("driver", DRIVERS)
def test_pydock_saved_images_run_with_their_files(ctd: Containerd, archives: dict[str, Path],
                                                  driver: str) -> None:
    namespace = f"files-{driver}"
    import_(ctd, namespace, driver, archives["default"], archives["layered"],
            archives["whiteout"])
    listed = ctd.ctr("images", "ls", "-q", namespace=namespace).stdout.split()
    assert sorted(listed) == sorted([DEFAULT, LAYERED, WHITEOUT])
    assert run(ctd, namespace, driver, DEFAULT, "sh", "-c", "echo hello; id -u") == "hello\n0\n"
    assert run(ctd, namespace, driver, LAYERED, "cat", "/etc/greeting", "/top.txt") == \
        "hello from the middle\ntop layer\n"
    assert run(ctd, namespace, driver, WHITEOUT, *WHITEOUT_CHECK) == WHITEOUT_SEEN


def test_a_pydock_saved_oci_archive_runs(ctd: Containerd, archives: dict[str, Path]) -> None:
    # The image's name comes from the annotation containerd reads (io.containerd.image.name):
    # an OCI archive without it would need ctr's --base-name.
    import_(ctd, "oci", "overlay", archives["whiteout-oci"])
    assert ctd.ctr("images", "ls", "-q", namespace="oci").stdout.split() == [WHITEOUT]
    assert run(ctd, "oci", "overlay", WHITEOUT, *WHITEOUT_CHECK) == WHITEOUT_SEEN


@pytest.mark.parametrize("driver", [d for d in DRIVERS if d != "bind"])
def test_a_containers_writes_are_invisible_to_the_next(ctd: Containerd,
                                                       archives: dict[str, Path],
                                                       driver: str) -> None:
    # Not on bind: its containers of one image share one directory, by design (docs).
    namespace = f"writes-{driver}"
    import_(ctd, namespace, driver, archives["layered"])
    run(ctd, namespace, driver, LAYERED, "sh", "-c",
        "echo scribbled > /top.txt && rm /etc/greeting && touch /new")
    assert run(ctd, namespace, driver, LAYERED, "sh", "-c",
               "cat /top.txt /etc/greeting; test -e /new || echo no-new") == \
        "top layer\nhello from the middle\nno-new\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_read_only_container_runs_on_a_view(ctd: Containerd, archives: dict[str, Path],
                                              driver: str) -> None:
    # ctr run --read-only asks for a View, not a Prepare: its mounts must come back read-only
    # whatever the driver (bind's would otherwise write into the image's shared root).
    namespace = f"view-{driver}"
    import_(ctd, namespace, driver, archives["layered"])
    container = f"c{time.monotonic_ns()}"
    out = ctd.ctr("run", "--rm", "--read-only", "--snapshotter", snapshotter(driver), LAYERED,
                  container, "sh", "-c", "cat /top.txt; touch /top.txt || echo refused",
                  namespace=namespace).stdout
    assert out == "top layer\nrefused\n"
    assert run(ctd, namespace, driver, LAYERED, "cat", "/top.txt") == "top layer\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_ctr_snapshots_ls_usage_mounts_rm(ctd: Containerd, archives: dict[str, Path],
                                          driver: str) -> None:
    namespace, name = f"snapshots-{driver}", snapshotter(driver)
    import_(ctd, namespace, driver, archives["default"])
    [(layer, (parent, kind))] = snapshots(ctd, namespace, driver).items()
    assert (parent, kind) == ("", "Committed")
    assert layer.startswith("sha256:")  # the chain id of the image's one layer

    ctd.ctr("snapshots", "--snapshotter", name, "prepare", "scratch", layer,
            namespace=namespace)
    assert snapshots(ctd, namespace, driver)["scratch"] == (layer, "Active")
    mounted = ctd.ctr("snapshots", "--snapshotter", name, "mounts", "/mnt", "scratch",
                      namespace=namespace).stdout
    assert mounted.startswith("mount -t overlay" if driver == "overlay" else "mount -t bind")

    usage = ctd.ctr("snapshots", "--snapshotter", name, "usage", "-b",
                    namespace=namespace).stdout
    sizes = {row[0]: int(row[1]) for row in map(str.split, usage.splitlines()[1:])}
    busybox = os.path.getsize(shutil.which("busybox") or "")
    assert sizes[layer] >= busybox  # stored at commit: the layer holds busybox

    refused = ctd.ctr("snapshots", "--snapshotter", name, "rm", layer, namespace=namespace,
                      check=False)
    assert refused.returncode != 0  # it is scratch's parent
    ctd.ctr("snapshots", "--snapshotter", name, "rm", "scratch", namespace=namespace)
    assert list(snapshots(ctd, namespace, driver)) == [layer]
    ctd.ctr("snapshots", "--snapshotter", name, "rm", layer, namespace=namespace)
    assert snapshots(ctd, namespace, driver) == {}
    ctd.collect_garbage()
    assert not [key for key in backend_snapshots(ctd.snapshotters[driver])
                if key.startswith(f"{namespace}/")]


@pytest.mark.parametrize("driver", DRIVERS)
def test_usage_of_a_containers_snapshot_counts_its_writes(ctd: Containerd,
                                                          archives: dict[str, Path],
                                                          driver: str) -> None:
    namespace, name = f"usage-{driver}", snapshotter(driver)
    import_(ctd, namespace, driver, archives["default"])
    ctd.ctr("containers", "create", "--snapshotter", name, DEFAULT, "writer", "dd",
            "if=/dev/zero", "of=/written", "bs=1024", "count=2048", namespace=namespace)

    def usage() -> int:
        out = ctd.ctr("snapshots", "--snapshotter", name, "usage", "-b", "writer",
                      namespace=namespace).stdout
        return int(out.splitlines()[1].split()[1])

    before = usage()
    ctd.ctr("tasks", "start", "writer", namespace=namespace)
    assert usage() >= before + (2 << 20)  # live, for an active snapshot
    ctd.ctr("containers", "rm", "writer", namespace=namespace)


def test_bind_containers_of_one_image_share_their_root(ctd: Containerd,
                                                       archives: dict[str, Path]) -> None:
    """What the bind driver is (drivers/bind.py): the containers of an image that exist at
    the same time have one root, so one's writes are the other's. The other drivers are
    held to the opposite in test_a_containers_writes_are_invisible_to_the_next."""
    namespace = "bind-shared"
    import_(ctd, namespace, "bind", archives["layered"])
    ctd.ctr("run", "-d", "--snapshotter", "pydock-bind", LAYERED, "keeper", "sleep", "60",
            namespace=namespace)
    try:
        run(ctd, namespace, "bind", LAYERED, "sh", "-c", "echo shared > /top.txt")
        assert run(ctd, namespace, "bind", LAYERED, "cat", "/top.txt") == "shared\n"
    finally:
        ctd.ctr("tasks", "rm", "-f", "keeper", namespace=namespace)
        ctd.ctr("containers", "rm", "keeper", namespace=namespace)


def test_podman_saved_archive_runs(ctd: Containerd, archives: dict[str, Path],
                                   tmp_path: Path) -> None:
    """podman loads pydock's archive and saves it again, with layers and a manifest of its
    own making; containerd imports that into pydock-overlay."""
    saved = tmp_path / "podman-saved.tar"
    with private_podman() as command:
        out = subprocess.run([*command, "load", "-i", str(archives["whiteout"])], check=True,
                             capture_output=True, text=True).stdout
        [loaded] = re.findall(r"Loaded image: (\S+)", out)
        subprocess.run([*command, "save", "--format", "docker-archive", "-o", str(saved),
                        loaded], check=True, capture_output=True)
    import_(ctd, "podman", "overlay", saved)
    [image] = ctd.ctr("images", "ls", "-q", namespace="podman").stdout.split()
    assert image.endswith(loaded)
    assert run(ctd, "podman", "overlay", image, *WHITEOUT_CHECK) == WHITEOUT_SEEN




@pytest.mark.parametrize("driver", DRIVERS)
def test_a_serve_restarted_between_import_and_run(archives: dict[str, Path], tmp_path: Path,
                                                  driver: str) -> None:
    with private_containerd({driver: tmp_path / "root"}) as own:
        import_(own, "default", driver, archives["whiteout"])
        before = snapshots(own, "default", driver)
        own.snapshotters[driver].restart()
        own.wait_until_reachable(driver)
        assert snapshots(own, "default", driver) == before
        assert run(own, "default", driver, WHITEOUT, *WHITEOUT_CHECK) == WHITEOUT_SEEN


def big_archive(directory: Path) -> tuple[Path, dict[str, str]]:
    """An image of busybox and three layers of a 24 MiB random file each: long enough to
    unpack that a kill -9 lands in the middle. Returns the archive and each file's sha256."""
    layers, digests = [make_layer(busybox_rootfs(directory / "base"), False)], {}
    for number in range(3):
        data, buffer = os.urandom(24 << 20), io.BytesIO()
        digests[f"/data/{number}"] = hashlib.sha256(data).hexdigest()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
            info = tarfile.TarInfo(f"data/{number}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
        layers.append(Layer(buffer.getvalue(), buffer.getvalue()))
    docker_archive(directory / "big.tar", layers, ["big:1"])
    return directory / "big.tar", digests


@pytest.mark.parametrize(("driver", "crash"), [("overlay", "kill -9"), *(
    (driver, step) for driver in ("overlay", "copy") for step in (
        "snapshotter.storage-prepared", "snapshotter.layer-made", "snapshotter.committed"))])
def test_a_serve_crashing_during_an_import_then_a_clean_retry(
        archives: dict[str, Path], tmp_path: Path, driver: str, crash: str) -> None:
    """The serve dies mid-import: killed from outside while a layer is being unpacked, or at
    one of its own steps (a failpoint: storage made, not yet in the graph; a layer made from
    an active snapshot; the graph committed, containerd not yet told). The import fails; once
    the serve is back, the same import succeeds and the root keeps nothing of the first.
    On overlay a layer is a copy of the upper directory; on copy, what the naive differ
    finds."""
    if crash == "kill -9":
        archive, digests = big_archive(tmp_path)
        image, check = "docker.io/library/big:1", "; ".join(
            f"/bin/busybox sha256sum {p}" for p in digests)
    else:
        archive, image = archives["whiteout"], WHITEOUT
    root = tmp_path / "root"
    with private_containerd({driver: root}) as own:
        serve = own.snapshotters[driver]
        if crash != "kill -9":
            serve.stop()
            serve.start(env={"PYDOCK_FAILPOINT": crash})
        importing = subprocess.Popen(
            ["ctr", "--address", str(own.address), "images", "import", "--snapshotter",
             f"pydock-{driver}", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True)
        if crash == "kill -9":
            # As soon as a layer is being unpacked into an active snapshot.
            deadline = time.monotonic() + 60
            while importing.poll() is None and "ACTIVE" not in backend_snapshots(
                    serve).values():
                assert time.monotonic() < deadline, "no snapshot of the import's in 60 s"
                time.sleep(0.01)
            serve.kill()
        _out, err = importing.communicate(timeout=120)
        assert importing.returncode != 0, "the import ended before the serve died"
        assert "unavailable" in err or "connection" in err, err
        serve.kill()  # reaped; a failpoint's SIGKILL has ended it already

        serve.start()
        own.wait_until_reachable(driver)
        import_(own, "default", driver, archive)
        if crash == "kill -9":
            out = run(own, "default", driver, image, "sh", "-c", check)
            assert {line.split()[1]: line.split()[0] for line in out.splitlines()} == digests
        else:
            assert run(own, "default", driver, image, *WHITEOUT_CHECK) == WHITEOUT_SEEN

        # What the first import left goes in containerd's garbage collection: the serve then
        # holds the image's committed layers, as containerd has them, and nothing else.
        layers = snapshots(own, "default", driver)
        assert {kind for _parent, kind in layers.values()} == {"Committed"}
        own.collect_garbage()
        assert sorted(backend_snapshots(serve).values()) == ["COMMITTED"] * len(layers)
    assert_holds_only_committed_layers(root, driver, len(layers))


def assert_holds_only_committed_layers(root: Path, driver: str, count: int) -> None:
    """The serve's root, read after it stopped: its graph (``snapshotter/metadata.json``)
    names ``count`` committed snapshots, ``snapshotter/layers/`` holds their layers and
    nothing else, the driver holds no container, and no work in progress is left (the
    layout of pydock.core.snapshotter.snapshots)."""
    graph = json.loads((root / "snapshotter" / "metadata.json").read_text())
    snapshots = list(graph["snapshots"].values())
    assert [s["kind"] for s in snapshots] == ["committed"] * count
    assert sorted(os.listdir(root / "snapshotter" / "layers")) == \
        sorted(str(s["id"]) for s in snapshots)
    # The driver's home (pydock.core.plugins.driver_home of the snapshotter's directory)
    # held the active snapshots: their containers are named by 64 hex digits.
    storage = root / "snapshotter" / "storage" / driver
    assert [p.name for p in storage.iterdir() if re.fullmatch(r"[0-9a-f]{64}", p.name)] == []
    # pydock names work in progress <prefix><pid>-<start time>-<random> (files.hidden_name).
    scratch = re.compile(r"\.[a-z]+-\d+-\d+-[0-9a-f]{16}")
    assert [str(p) for p in root.rglob(".*") if scratch.fullmatch(p.name)] == []
