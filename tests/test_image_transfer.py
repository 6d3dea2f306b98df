"""image load / image save: docker archives and OCI layouts, built by hand and by real tools
(umoci, skopeo, podman), digests verified, hostile archives refused without a trace."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    DRIVERS,
    Layer,
    busybox_rootfs,
    docker_archive,
    make_config,
    make_layers,
    oci_layout,
    private_podman,
)

from pydock.testing.cli import Pydock
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import reg, sym, tree, write_tar

# -- checks ----------------------------------------------------------------------------------


def store_state(pydock: Pydock) -> tuple[list[str], str, list[str]]:
    """Everything a load may change: layers, names, configs."""
    images = pydock.root / "images"
    repositories = images / "repositories.json"
    return (sorted(p.name for p in (pydock.root / "layers").iterdir()),
            repositories.read_text() if repositories.exists() else "",
            sorted(p.name for p in (images / "configs").iterdir()))


def assert_load_refused(pydock: Pydock, source: Path, message: str) -> None:
    """``image load`` of ``source`` is refused with ``message`` and changes no image."""
    before = store_state(pydock)
    pydock.refused("image", "load", "-i", str(source), match=message)
    assert store_state(pydock) == before


def loaded_ids(output: str) -> list[str]:
    return [line.removeprefix("Loaded image: ") for line in output.splitlines()]


def inspect(pydock: Pydock, reference: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(pydock.ok("image", "inspect", reference))
    return result


def layer_trees(pydock: Pydock, reference: str) -> list[dict[str, Any]]:
    return [manifest(pydock.root / "layers" / d.removeprefix("sha256:") / "diff")
            for d in inspect(pydock, reference)["RootFS"]["Layers"]]


def assert_same_layers(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> None:
    assert len(a) == len(b)
    for left, right in zip(a, b, strict=True):
        assert left == right, "\n".join(diff_manifests(left, right))


# -- hand-built archives ---------------------------------------------------------------------


@pytest.mark.parametrize("compress", [(False, False, False), (True, False, True)])
def test_load_a_docker_archive(pydock: Pydock, tmp_path: Path,
                               compress: tuple[bool, bool, bool]) -> None:
    layers = make_layers(tmp_path, compress)
    archive = tmp_path / "image.tar"
    config = docker_archive(archive, layers, ["example.com/tiny:1.0", "tiny"])
    image_id = f"sha256:{hashlib.sha256(config).hexdigest()}"

    out = pydock.ok("image", "load", "-i", str(archive))
    assert loaded_ids(out) == ["example.com/tiny:1.0", "tiny:latest"]
    details = inspect(pydock, "tiny")
    assert details["Id"] == image_id
    assert details["RepoTags"] == ["example.com/tiny:1.0", "tiny:latest"]
    assert details["RootFS"]["Layers"] == [layer.diff_id for layer in layers]
    # Stored verbatim: the id is the sha256 of the very bytes that were in the archive.
    assert (pydock.root / "images" / "configs" / f"{image_id[7:]}.json").read_bytes() == config
    rows = json.loads(pydock.ok("image", "ls", "--format", "json"))
    assert {(r["Repository"], r["Tag"], r["ID"]) for r in rows} >= {
        ("example.com/tiny", "1.0", image_id[7:19]), ("tiny", "latest", image_id[7:19])}
    assert pydock.ok("run", "--rm", "--image", "tiny", "cat", "/top.txt", "/etc/greeting") == \
        "top layer\nhello from the middle\n"
    # Loading again changes nothing and shares every layer.
    layers_before = store_state(pydock)
    pydock.ok("image", "load", "-i", str(archive))
    assert store_state(pydock) == layers_before


def test_layers_shared_through_symlinks_as_older_docker_saves_them(pydock: Pydock,
                                                                  tmp_path: Path) -> None:
    layers = make_layers(tmp_path, (False, False, False))
    archive = tmp_path / "image.tar"
    docker_archive(archive, layers[:2], ["linked:1"],
                   layer_paths=["0/layer.tar", "1/layer.tar", "2/layer.tar"],
                   config=make_config(layers),
                   extra=[reg("elsewhere/layer.tar", layers[2].blob),
                          sym("2/layer.tar", "../elsewhere/./layer.tar")])
    pydock.ok("image", "load", "-i", str(archive))
    assert pydock.ok("run", "--rm", "--image", "linked:1", "cat", "/top.txt") == "top layer\n"


@pytest.mark.parametrize("form", ["directory", "tar", "tar.gz"])
def test_load_an_oci_layout(pydock: Pydock, tmp_path: Path, form: str) -> None:
    layers = make_layers(tmp_path, (True, False, True))
    layout = tmp_path / "layout"
    config = oci_layout(layout, layers, "registry.local:5000/team/tiny:2")
    source = layout if form == "directory" else write_tar(
        tmp_path / f"layout.{form}", tree(layout), compress=form == "tar.gz")

    assert loaded_ids(pydock.ok("image", "load", "-i", str(source))) == \
        ["registry.local:5000/team/tiny:2"]
    details = inspect(pydock, "registry.local:5000/team/tiny:2")
    assert details["Id"] == f"sha256:{hashlib.sha256(config).hexdigest()}"
    assert pydock.ok("run", "--rm", "--image", "registry.local:5000/team/tiny:2",
                     "cat", "/top.txt") == "top layer\n"


def test_an_oci_image_named_by_a_bare_tag_is_loaded_without_a_name(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    layers = make_layers(tmp_path, (False, False, False))
    config = oci_layout(tmp_path / "layout", layers, "latest")
    image_id = f"sha256:{hashlib.sha256(config).hexdigest()}"
    before = store_state(pydock)

    assert loaded_ids(pydock.ok("image", "load", "-i", str(tmp_path / "layout"))) == [image_id]
    assert store_state(pydock)[1] == before[1]  # no name added
    assert inspect(pydock, image_id[7:19])["RepoTags"] == []
    listed = [line.split() for line in pydock.ok("image", "ls").splitlines()]
    assert ["<none>", "<none>", image_id[7:19]] in [row[:3] for row in listed]
    assert pydock.ok("run", "--rm", "--image", image_id[7:19], "cat", "/top.txt") == \
        "top layer\n"
    pydock.ok("image", "rm", image_id)
    assert store_state(pydock) == before
    pydock.refused("image", "inspect", image_id)


# -- rejected archives -----------------------------------------------------------------------


def test_a_layer_that_does_not_match_its_diff_id_is_refused(pydock: Pydock,
                                                            tmp_path: Path) -> None:
    layers = make_layers(tmp_path, (False, False, False))
    config = make_config(layers)
    # Flip a byte of the busybox binary in the middle of the first layer.
    flipped = bytearray(layers[0].tar)
    flipped[len(flipped) // 2] ^= 0xFF
    layers[0] = Layer(bytes(flipped), bytes(flipped))
    docker_archive(tmp_path / "bad.tar", layers, ["bad:1"], config=config)
    assert_load_refused(pydock, tmp_path / "bad.tar", "does not match the config's diff_id")


def test_a_later_bad_layer_removes_the_layers_already_imported(pydock: Pydock,
                                                               tmp_path: Path) -> None:
    layers = make_layers(tmp_path, (False, True, False))
    layout = tmp_path / "layout"
    oci_layout(layout, layers, "localhost/broken:1")
    blob = layout / "blobs" / "sha256" / layers[2].digest[7:]
    data = bytearray(blob.read_bytes())
    data[600] ^= 0x01  # inside top.txt's contents
    blob.write_bytes(bytes(data))
    assert_load_refused(pydock, layout, "content does not match its digest")


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "a/../../x.tar",
                                  "symlink-out"])
def test_hostile_layer_paths_are_refused(pydock: Pydock, tmp_path: Path, path: str) -> None:
    layers = make_layers(tmp_path, (False, False, False))
    archive = tmp_path / "hostile.tar"
    docker_archive(archive, layers, ["hostile:1"], layer_paths=["0/layer.tar", "1/layer.tar",
                                                                 path],
                   extra=[sym(path, "../../../../../../etc/passwd")] if path == "symlink-out"
                   else [])
    assert_load_refused(pydock, archive, "leaves the archive" if path != "/etc/passwd"
                   else "absolute path")


def test_a_hostile_oci_layout_directory_cannot_reach_outside(pydock: Pydock,
                                                             tmp_path: Path) -> None:
    layers = make_layers(tmp_path, (False, False, False))
    layout = tmp_path / "layout"
    oci_layout(layout, layers, "localhost/x:1")
    # A symlinked blob is resolved inside the layout, where /etc/passwd does not exist.
    blob = layout / "blobs" / "sha256" / layers[0].digest[7:]
    blob.unlink()
    blob.symlink_to("/etc/passwd")
    assert_load_refused(pydock, layout, "cannot open blobs/sha256/")


def bad_inputs(tmp_path: Path) -> Iterator[tuple[str, Path, str]]:
    (tmp_path / "noise").write_bytes(b"this is not an archive" * 100)
    yield "noise", tmp_path / "noise", "not a tar archive"
    (tmp_path / "empty").mkdir()
    yield "empty dir", tmp_path / "empty", "no manifest.json"
    write_tar(tmp_path / "nomanifest.tar", [reg("hello", b"hi")])
    yield "no manifest", tmp_path / "nomanifest.tar", "no index.json"
    write_tar(tmp_path / "badjson.tar", [reg("manifest.json", b"[{\"Config\": ")])
    yield "corrupt json", tmp_path / "badjson.tar", "invalid JSON"
    write_tar(tmp_path / "nodict.tar", [reg("manifest.json", b"[42]")])
    yield "wrong json type", tmp_path / "nodict.tar", "expected a JSON object"
    layers = make_layers(tmp_path, (False, False, False))
    docker_archive(tmp_path / "missing.tar", layers[:2], ["m:1"],
                   layer_paths=["a/layer.tar", "b/layer.tar", "c/layer.tar"],
                   config=make_config(layers))
    yield "missing layer", tmp_path / "missing.tar", "no c/layer.tar in the archive"
    wrong = make_config(layers).replace(b'"diff_ids": [', b'"diff_ids": ["sha256:00", ')
    docker_archive(tmp_path / "wrongcount.tar", layers, ["w:1"], config=wrong)
    yield "bad diff_id", tmp_path / "wrongcount.tar", "is not a sha256 digest"
    config = make_config(layers)
    docker_archive(tmp_path / "renamed.tar", layers, ["r:1"], config=config)
    renamed = []
    with tarfile.open(tmp_path / "renamed.tar") as source:
        for member in source:
            data = source.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == "manifest.json":
                data = data.replace(hashlib.sha256(config).hexdigest().encode(), b"f" * 64)
            renamed.append(reg("f" * 64 + ".json" if member.name.endswith(".json") and
                               member.name != "manifest.json" else member.name, data))
    write_tar(tmp_path / "renamed2.tar", renamed)
    yield "config named wrongly", tmp_path / "renamed2.tar", "does not match its digest name"
    huge = json.loads(make_config(layers))
    huge["rootfs"]["diff_ids"] *= 200
    docker_archive(tmp_path / "huge.tar", layers, ["h:1"], config=json.dumps(huge).encode())
    yield "absurd layer count", tmp_path / "huge.tar", "more than the 500"
    layout = tmp_path / "negsize"
    oci_layout(layout, layers, None)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["size"] = -1
    (layout / "index.json").write_text(json.dumps(index))
    yield "negative size", layout, "invalid size -1"
    zstd = tmp_path / "zstd"
    oci_layout(zstd, [Layer(layers[0].tar, b"\x28\xb5\x2f\xfd" + b"\0" * 600), *layers[1:]],
               None)
    yield "zstd layer", zstd, "zstd-compressed layers are not supported"
    (tmp_path / "zstd.tar").write_bytes(b"\x28\xb5\x2f\xfd" + b"\0" * 600)
    yield "zstd archive", tmp_path / "zstd.tar", "zstd-compressed archives are not supported"


def test_bad_inputs_are_one_line_errors_that_leave_nothing_behind(pydock: Pydock,
                                                                  tmp_path: Path) -> None:
    for label, source, message in bad_inputs(tmp_path):
        try:
            assert_load_refused(pydock, source, message)
        except AssertionError as e:
            raise AssertionError(f"{label}: {e}") from e


# -- save and load back ----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_keeps_content_and_names(pydock: Pydock, tmp_path: Path, fmt: str) -> None:
    layers = make_layers(tmp_path, (True, False, False))
    docker_archive(tmp_path / "in.tar", layers, ["example.com/rt:1"])
    pydock.ok("image", "load", "-i", str(tmp_path / "in.tar"))
    saved = tmp_path / "saved.tar"
    pydock.ok("image", "save", "example.com/rt:1", "-o", str(saved), "--format", fmt)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".saved")] == []

    fresh = Pydock(tmp_path / "fresh")
    assert loaded_ids(fresh.ok("image", "load", "-i", str(saved))) == ["example.com/rt:1"]
    assert_same_layers(layer_trees(pydock, "example.com/rt:1"),
                       layer_trees(fresh, "example.com/rt:1"))
    assert fresh.ok("run", "--rm", "--image", "example.com/rt:1", "cat", "/top.txt") == \
        "top layer\n"
    # Once saved by pydock, an image saves to the same bytes, so its id survives round trips.
    again = tmp_path / "again.tar"
    fresh.ok("image", "save", "example.com/rt:1", "-o", str(again), "--format", fmt)
    assert again.read_bytes() == saved.read_bytes()


def test_save_errors(pydock: Pydock, tmp_path: Path) -> None:
    pydock.refused("image", "save", "nosuch:1", "-o", str(tmp_path / "x.tar"),
                   match="no such image")
    pydock.refused("image", "save", "pydock/default", "-o", str(tmp_path / "no" / "x.tar"),
                   match="no such directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


# -- real tools ------------------------------------------------------------------------------


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {tool})")
    return path


def run(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def extract_as_is(archive: Path, directory: Path) -> None:
    """Extract a tar pydock wrote into ``directory`` exactly as it says: owners (by number),
    modes and device nodes included.

    With GNU tar rather than tarfile: tarfile says "as it is" with filter="fully_trusted", which
    Python 3.11 only has from 3.11.4 on, and from 3.14 its default filter is "data", which
    refuses device nodes and drops owners and setuid bits."""
    run(need("tar"), "-x", "-p", "--numeric-owner", "-f", archive, "-C", directory)


def test_load_a_multi_layer_image_built_by_umoci(pydock: Pydock, tmp_path: Path) -> None:
    umoci = need("umoci")
    layout, bundle = tmp_path / "layout", tmp_path / "bundle"
    image = f"{layout}:v1"
    run(umoci, "init", "--layout", layout)
    run(umoci, "new", "--image", image)

    def change(edit: Any) -> None:
        run(umoci, "unpack", "--image", image, bundle)
        edit(bundle / "rootfs")
        run(umoci, "repack", "--image", image, bundle)
        shutil.rmtree(bundle)

    def base(rootfs: Path) -> None:
        busybox_rootfs(rootfs)
        (rootfs / "gone.txt").write_text("deleted later\n")
        (rootfs / "olddir" / "sub").mkdir(parents=True)
        (rootfs / "olddir" / "old.txt").write_text("old\n")
        (rootfs / "olddir" / "sub" / "deep.txt").write_text("deep\n")

    def modify(rootfs: Path) -> None:
        (rootfs / "gone.txt").unlink()
        shutil.rmtree(rootfs / "olddir")
        (rootfs / "olddir").mkdir()
        (rootfs / "olddir" / "new.txt").write_text("new\n")
        # Not a directory replaced by a file: umoci 0.4.7 then writes a whiteout beneath the
        # new file (dir/.wh.x after the file dir), which podman refuses too.

    def add_top(rootfs: Path) -> None:
        (rootfs / "top.txt").write_text("third layer\n")

    for edit in (base, modify, add_top):
        change(edit)
    [image_id] = loaded_ids(pydock.ok("image", "load", "-i", str(layout)))
    assert len(inspect(pydock, image_id)["RootFS"]["Layers"]) == 3
    script = "cat /top.txt; ls -A /olddir; test -e /gone.txt || echo gone"
    for driver in DRIVERS:
        assert pydock.ok("run", "--rm", "--storage", driver, "--image", image_id, "sh", "-c",
                         script) == "third layer\nnew.txt\ngone\n", driver


def test_skopeo_reads_pydock_archives_and_pydock_reads_skopeo_output(
        pydock: Pydock, tmp_path: Path) -> None:
    skopeo = need("skopeo")
    layers = make_layers(tmp_path, (True, False, True))
    docker_archive(tmp_path / "in.tar", layers, ["localhost/sk:1"])
    pydock.ok("image", "load", "-i", str(tmp_path / "in.tar"))
    original = layer_trees(pydock, "localhost/sk:1")
    for fmt, source_transport in (("docker", "docker-archive"), ("oci", "oci-archive")):
        saved = tmp_path / f"saved-{fmt}.tar"
        pydock.ok("image", "save", "localhost/sk:1", "-o", str(saved), "--format", fmt)
        layout = tmp_path / f"skopeo-{fmt}"
        run(skopeo, "--insecure-policy", "copy", f"{source_transport}:{saved}",
            f"oci:{layout}:tag1")
        archive = tmp_path / f"skopeo-{fmt}.tar"
        run(skopeo, "--insecure-policy", "copy", f"{source_transport}:{saved}",
            f"oci-archive:{archive}:localhost/from-skopeo:{fmt}")
        fresh = Pydock(tmp_path / f"fresh-{fmt}")
        [unnamed] = loaded_ids(fresh.ok("image", "load", "-i", str(layout)))
        assert unnamed.startswith("sha256:")  # skopeo writes a bare tag: see image_transfer
        assert loaded_ids(fresh.ok("image", "load", "-i", str(archive))) == \
            [f"localhost/from-skopeo:{fmt}"]
        assert_same_layers(original, layer_trees(fresh, unnamed))
        assert_same_layers(original, layer_trees(fresh, f"localhost/from-skopeo:{fmt}"))
        assert fresh.ok("run", "--rm", "--image", unnamed, "cat", "/top.txt") == "top layer\n"


@pytest.fixture
def podman() -> Iterator[list[str]]:
    need("podman")
    with private_podman() as command:
        yield command


def test_podman_loads_pydock_archives(pydock: Pydock, tmp_path: Path,
                                      podman: list[str]) -> None:
    layers = make_layers(tmp_path, (False, True, False))
    docker_archive(tmp_path / "in.tar", layers, ["localhost/pd:1"])
    pydock.ok("image", "load", "-i", str(tmp_path / "in.tar"))
    busybox = hashlib.sha256((tmp_path / "l1" / "bin" / "busybox").read_bytes()).hexdigest()
    for fmt in ("docker", "oci"):
        saved = tmp_path / f"saved-{fmt}.tar"
        pydock.ok("image", "save", "localhost/pd:1", "-o", str(saved), "--format", fmt)
        out = run(*podman, "load", "-i", saved)
        assert "localhost/pd:1" in out
        # This machine's cgroup setup stops podman run; the image's tree shows what it has.
        mounted = Path(run(*podman, "image", "mount", "localhost/pd:1").strip())
        try:
            assert (mounted / "top.txt").read_text() == "top layer\n"
            assert (mounted / "etc" / "greeting").read_text() == "hello from the middle\n"
            assert hashlib.sha256((mounted / "bin" / "busybox").read_bytes()).hexdigest() == \
                busybox
            assert (mounted / "bin" / "sh").readlink() == Path("busybox")
        finally:
            run(*podman, "image", "unmount", "localhost/pd:1")
        run(*podman, "rmi", "localhost/pd:1")


def test_a_container_committed_in_pydock_shows_the_same_tree_in_podman(
        pydock: Pydock, tmp_path: Path, podman: list[str]) -> None:
    pydock.ok("run", "--storage", "copy", "--name", "src", "sh", "-c",
              "echo committed > /etc/motd && rm /etc/group && mkdir -p /srv && touch /srv/x")
    pydock.ok("commit", "src", "localhost/committed:1")
    pydock.ok("export", "src", "-o", str(tmp_path / "pydock-view.tar"))
    pydock.ok("image", "save", "localhost/committed:1", "-o", str(tmp_path / "saved.tar"))
    run(*podman, "load", "-i", tmp_path / "saved.tar")
    mounted = Path(run(*podman, "image", "mount", "localhost/committed:1").strip())
    try:
        expected = tmp_path / "expected"
        expected.mkdir()
        extract_as_is(tmp_path / "pydock-view.tar", expected)
        # The trees' own roots are the extraction directory and podman's mount point.
        ours, theirs = manifest(expected, times=False), manifest(mounted, times=False)
        del ours["/"], theirs["/"]
        assert diff_manifests(ours, theirs) == []
        assert (mounted / "etc" / "motd").read_text() == "committed\n"
        assert not (mounted / "etc" / "group").exists()
    finally:
        run(*podman, "image", "unmount", "localhost/committed:1")
    run(*podman, "rmi", "localhost/committed:1")


def test_pydock_loads_podman_archives(pydock: Pydock, tmp_path: Path,
                                      podman: list[str]) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "from-podman.txt").write_text("made by podman\n")
    write_tar(tmp_path / "rootfs.tar", tree(rootfs))
    run(*podman, "import", tmp_path / "rootfs.tar", "localhost/made-by-podman:1")
    for fmt in ("docker-archive", "oci-archive"):
        archive = tmp_path / f"{fmt}.tar"
        run(*podman, "save", "--format", fmt, "-o", archive, "localhost/made-by-podman:1")
        podman_id = run(*podman, "image", "inspect", "--format", "{{.Id}}",
                        "localhost/made-by-podman:1").strip()
        fresh = Pydock(tmp_path / f"fresh-{fmt}")
        assert loaded_ids(fresh.ok("image", "load", "-i", str(archive))) == \
            ["localhost/made-by-podman:1"]
        assert inspect(fresh, "localhost/made-by-podman:1")["Id"] == f"sha256:{podman_id}"
        assert fresh.ok("run", "--rm", "--image", "localhost/made-by-podman:1",
                        "cat", "/from-podman.txt") == "made by podman\n"
    # Every driver shows exactly the tree podman shows for the image.
    mounted = Path(run(*podman, "image", "mount", "localhost/made-by-podman:1").strip())
    try:
        theirs = manifest(mounted, times=False)
        for driver in DRIVERS:
            fresh.ok("run", "--storage", driver, "--image", "localhost/made-by-podman:1",
                     "--name", driver, "true")
            fresh.ok("export", driver, "-o", str(tmp_path / f"{driver}.tar"))
            ours_dir = tmp_path / f"ours-{driver}"
            ours_dir.mkdir()
            extract_as_is(tmp_path / f"{driver}.tar", ours_dir)
            ours = manifest(ours_dir, times=False)
            assert diff_manifests({k: v for k, v in ours.items() if k != "/"},
                                  {k: v for k, v in theirs.items() if k != "/"}) == [], driver
            fresh.ok("rm", driver)
    finally:
        run(*podman, "image", "unmount", "localhost/made-by-podman:1")
