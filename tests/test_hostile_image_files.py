"""Hostile image files given to ``image import`` and ``image load``: truncated, garbled,
size bombs, docker archives with bad manifests or layers, and OCI layouts whose index,
manifests, blobs and digests lie or lead out of the layout.

As in every test_hostile_* file: bad input gets one line on stderr and exit status 125, or
works as in docker; never a traceback. A refused command leaves the storage root as it
found it: helpers.refused_unchanged compares a full listing of it (paths, types, modes,
owners, sizes, contents) before and after. The root is a copy of conftest's primed_root,
which has run one container on every driver, so the store's own directories do not count
as a change; conftest checks after every test that no mount and no container cgroup
survives. The bad-input tests of test_cli_errors, test_state, test_users, test_volumes,
test_cgroups, the test_archive_* files and test_image_transfer are not repeated here.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    Layer,
    assert_works,
    busybox_rootfs,
    docker_archive,
    make_config,
    oci_layout,
    refused_unchanged,
)

from pydock.testing.cli import Pydock
from pydock.testing.tar import reg, tar_bytes, tree, write_tar

# conftest's pydock fixture, on a copy of its primed root.
pytestmark = pytest.mark.primed


def sparse_bomb(claimed: int) -> bytes:
    """A layer of one GNU sparse file (PAX format 0.1) of ``claimed`` bytes: holes, which
    extraction writes out as zeros, then one block of data."""
    return tar_bytes([reg("bomb", b"x" * 512, pax_headers={
        "GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.name": "bomb",
        "GNU.sparse.size": str(claimed), "GNU.sparse.map": f"{claimed - 512},512"})])


def claims_size(size: int) -> bytes:
    """A tar whose one member's header says ``size`` bytes, followed by one block of data."""
    info = tarfile.TarInfo("huge")
    info.size = size
    return info.tobuf(tarfile.GNU_FORMAT) + b"x" * 512 + bytes(1024)


def negative_size() -> bytes:
    """A member whose size field is base-256 -1, which tarfile reads as it is."""
    header = bytearray(tarfile.TarInfo("negative").tobuf(tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 12
    header[148:156] = b"        "
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + bytes(1024)


# Two members, 'first' (3000 bytes) and 'second', then the end-of-archive marker.
TWO = tar_bytes([reg("first", b"1" * 3000), reg("second", b"2" * 100)])
GZIP = gzip.compress(TWO, mtime=0)

IMPORT_FILES: dict[str, tuple[Callable[[Path], Any], str]] = {
    "empty": (lambda p: p.write_bytes(b""), "empty file"),
    "random-bytes": (lambda p: p.write_bytes(bytes(range(256)) * 20), "not a tar archive"),
    "json": (lambda p: p.write_text('{"not": "a tar"}'), "not a tar archive"),
    "directory": (lambda p: p.mkdir(), "is a directory"),
    "cut-in-the-first-header": (lambda p: p.write_bytes(TWO[:100]), "not a tar archive"),
    "cut-after-the-first-header": (lambda p: p.write_bytes(TWO[:512]),
                                   "'first': unexpected end of data"),
    "cut-in-the-first-data": (lambda p: p.write_bytes(TWO[:2000]),
                              "'first': unexpected end of data"),
    "cut-in-the-second-header": (lambda p: p.write_bytes(TWO[:3584 + 300]),
                                 "invalid header or trailing data at byte 3584"),
    "cut-before-the-end-marker": (lambda p: p.write_bytes(TWO[:3584 + 1024]),
                                  "truncated (no end-of-archive marker)"),
    "gzip-of-garbage": (lambda p: p.write_bytes(GZIP[:10] + b"\xff" * 600),
                        "while decompressing data"),
    "gzip-cut-short": (lambda p: p.write_bytes(GZIP[:len(GZIP) // 2]),
                       "Compressed file ended before the end-of-stream marker"),
    "gzip-then-garbage": (lambda p: p.write_bytes(GZIP + b"garbage after it"),
                          "Not a gzipped file"),
    "member-claiming-a-terabyte": (lambda p: p.write_bytes(claims_size(1 << 40)),
                                   "'huge': it claims 1099511627776 bytes, more than the"),
    "sparse-member-claiming-a-petabyte": (lambda p: p.write_bytes(sparse_bomb(1 << 50)),
                                          "'bomb': it claims 1125899906842624 bytes"),
    "member-of-negative-size": (lambda p: p.write_bytes(negative_size()),
                                "'negative': invalid size -1"),
}


@pytest.mark.parametrize(("make", "message"), IMPORT_FILES.values(), ids=IMPORT_FILES.keys())
def test_a_bad_file_to_import_is_refused(pydock: Pydock, tmp_path: Path,
                                         make: Callable[[Path], Any], message: str) -> None:
    source = tmp_path / "image.tar"
    make(source)
    refused_unchanged(pydock, ["image", "import", str(source), "imported"], message)


def test_an_archive_of_many_entries_imports_and_runs(pydock: Pydock, tmp_path: Path) -> None:
    write_tar(tmp_path / "many.tar", [*tree(busybox_rootfs(tmp_path / "rootfs")),
                                      *(reg(f"many/{number}") for number in range(20_000))])
    pydock.ok("image", "import", str(tmp_path / "many.tar"), "many")
    assert_works(pydock("run", "--rm", "--image", "many", "sh", "-c", "ls /many | wc -l"),
                 "20000\n")


def test_a_sparse_file_the_store_can_hold_is_imported_whole(pydock: Pydock,
                                                            tmp_path: Path) -> None:
    (tmp_path / "sparse.tar").write_bytes(sparse_bomb(1 << 20))
    pydock.ok("image", "import", str(tmp_path / "sparse.tar"), "sparse")
    assert json.loads(pydock.ok("image", "inspect", "sparse"))["Size"] == 1 << 20


def docker_archive_manifest_first(path: Path, layers: list[Layer],
                                  manifest_entry: dict[str, Any] | None = None) -> None:
    """A docker archive with manifest.json and the config ahead of the layers, so that a cut
    anywhere in the layers still leaves a manifest to read. ``manifest_entry`` overrides
    fields of the manifest's one entry."""
    config = make_config(layers)
    config_name = f"{hashlib.sha256(config).hexdigest()}.json"
    paths = [f"{number}/layer.tar" for number in range(len(layers))]
    entry = {"Config": config_name, "RepoTags": ["hostile:1"], "Layers": paths,
             **(manifest_entry or {})}
    write_tar(path, [reg("manifest.json", json.dumps([entry]).encode()), reg(config_name, config),
                     *(reg(name, layer.blob) for layer, name in zip(layers, paths, strict=True))])


def docker_with(**entry: Any) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        docker_archive_manifest_first(tmp_path / "image.tar", layers, entry)
        return tmp_path / "image.tar"
    return make


def docker_cut(fraction: float) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        docker_archive_manifest_first(tmp_path / "whole.tar", layers)
        data = (tmp_path / "whole.tar").read_bytes()
        (tmp_path / "image.tar").write_bytes(data[:int(len(data) * fraction)])
        return tmp_path / "image.tar"
    return make


def docker_with_layer(blob: bytes) -> Callable[[Path, list[Layer]], Path]:
    """Archive whose last layer is ``blob``, with a config that expects its diff_id."""
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        hostile = [*layers[:2], Layer(blob, blob)]
        docker_archive(tmp_path / "image.tar", hostile, ["hostile:1"])
        return tmp_path / "image.tar"
    return make


def file_of(data: bytes) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        (tmp_path / "image.tar").write_bytes(data)
        return tmp_path / "image.tar"
    return make


def tar_of(files: dict[str, bytes]) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        (tmp_path / "image.tar").write_bytes(tar_bytes([reg(n, d) for n, d in files.items()]))
        return tmp_path / "image.tar"
    return make


def gzipped(make_inner: Callable[[Path, list[Layer]], Path],
            edit: Callable[[bytes], bytes]) -> Callable[[Path, list[Layer]], Path]:
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        data = gzip.compress(make_inner(tmp_path, layers).read_bytes(), mtime=0)
        (tmp_path / "image.tar.gz").write_bytes(edit(data))
        return tmp_path / "image.tar.gz"
    return make


# Changes an OCI layout: (its directory, the parts layout_with passes); any result is ignored.
Edit = Callable[[Path, dict[str, Any]], object]


def layout_with(edit: Edit,
                as_tar: bool = False) -> Callable[[Path, list[Layer]], Path]:
    """An OCI layout directory (or a tar of it) changed by ``edit(layout, parts)``; parts
    holds the index, the manifest and the blob paths, as written."""
    def make(tmp_path: Path, layers: list[Layer]) -> Path:
        layout = tmp_path / "layout"
        oci_layout(layout, layers, "localhost/hostile:1")
        index = json.loads((layout / "index.json").read_text())
        manifest_digest = index["manifests"][0]["digest"]
        manifest_path = layout / "blobs" / "sha256" / manifest_digest[7:]
        document = json.loads(manifest_path.read_bytes())
        parts = {"index": index, "manifest": document, "manifest_path": manifest_path,
                 "config_path": layout / "blobs" / "sha256" / document["config"]["digest"][7:],
                 "layer_path": layout / "blobs" / "sha256" / document["layers"][0]["digest"][7:]}
        edit(layout, parts)
        return write_tar(tmp_path / "layout.tar", tree(layout)) if as_tar else layout
    return make


def set_index(change: Callable[[dict[str, Any]], Any]) -> Edit:
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        change(parts["index"])
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def rewrite_manifest(change: Callable[[dict[str, Any]], Any]) -> Edit:
    """Change the manifest and store it under its new digest, as a valid layout would."""
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        change(parts["manifest"])
        data = json.dumps(parts["manifest"]).encode()
        digest = hashlib.sha256(data).hexdigest()
        (layout / "blobs" / "sha256" / digest).write_bytes(data)
        parts["index"]["manifests"][0].update(digest=f"sha256:{digest}", size=len(data))
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def nested_indexes(depth: int, platform: dict[str, str] | None = None) -> Edit:
    """The image's manifest below ``depth`` indexes, the innermost naming its platform."""
    def edit(layout: Path, parts: dict[str, Any]) -> None:
        descriptor = parts["index"]["manifests"][0]
        if platform is not None:
            descriptor = {**descriptor, "platform": platform}
        for _ in range(depth):
            data = json.dumps({"schemaVersion": 2, "manifests": [descriptor]}).encode()
            digest = hashlib.sha256(data).hexdigest()
            (layout / "blobs" / "sha256" / digest).write_bytes(data)
            descriptor = {"mediaType": "application/vnd.oci.image.index.v1+json",
                          "digest": f"sha256:{digest}", "size": len(data)}
        parts["index"]["manifests"] = [descriptor]
        (layout / "index.json").write_text(json.dumps(parts["index"]))
    return edit


def blob_symlink_out(layout: Path, parts: dict[str, Any]) -> None:
    parts["layer_path"].unlink()
    parts["layer_path"].symlink_to("../../../../../../../../etc/passwd")


BadArchive = Callable[[Path, list[Layer]], Path]

# test_image_transfer's bad_inputs and hostile-path tests cover the rest.
LOAD_FILES: dict[str, tuple[BadArchive, str]] = {
    "empty": (file_of(b""), "empty file"),
    "json": (file_of(b'{"a": 1}'), "not a tar archive"),
    "gzip-of-garbage": (file_of(GZIP[:10] + b"\xff" * 600), "while decompressing data"),
    "gzip-cut-short": (gzipped(docker_with(), lambda data: data[:len(data) // 2]),
                       "cannot decompress: Compressed file ended before the end-of-stream"),
    "gzip-then-garbage": (gzipped(docker_with(), lambda data: data + b"garbage"),
                          "cannot decompress: Not a gzipped file"),
    "cut-in-the-first-layer": (docker_cut(0.3), "cannot read tar archive: unexpected end"),
    "cut-in-the-last-layer": (docker_cut(0.9), "cannot read tar archive: unexpected end"),
    "manifest-lists-nothing": (tar_of({"manifest.json": b"[]"}), "manifest.json lists 0 images"),
    "config-path-climbing": (docker_with(Config="../x.json"), "path '../x.json' leaves"),
    "config-missing": (docker_with(Config="nowhere.json"), "no nowhere.json in the archive"),
    "layers-not-a-list": (docker_with(Layers="0/layer.tar"), "Layers: expected a JSON array"),
    "fewer-layers-than-diff-ids": (docker_with(Layers=["0/layer.tar"]),
                                   "1 layers but its config has 3 diff_ids"),
    "repo-tag-malformed": (docker_with(RepoTags=["NOT/valid"]), "invalid image reference"),
    "repo-tag-not-a-string": (docker_with(RepoTags=[5]), "RepoTags: expected a JSON string"),
    "layer-not-a-tar": (docker_with_layer(bytes(range(256)) * 8), "cannot read tar archive"),
    "layer-gzip-cut-short": (docker_with_layer(gzip.compress(TWO)[:-10]),
                             "Compressed file ended before the end-of-stream marker"),
    "layer-sparse-bomb": (docker_with_layer(sparse_bomb(1 << 50)), "'bomb': it claims"),
    "oci-no-oci-layout": (layout_with(lambda layout, _: (layout / "oci-layout").unlink()),
                          "cannot open oci-layout"),
    "oci-index-not-json": (layout_with(lambda layout, _: (layout / "index.json").write_text(
        "{")), "index.json: invalid JSON"),
    "oci-index-empty": (layout_with(set_index(lambda index: index.update(manifests=[]))),
                        "index.json lists 0 manifests"),
    "oci-index-manifests-not-a-list": (layout_with(set_index(
        lambda index: index.update(manifests={}))), "manifests: expected a JSON array"),
    "oci-digest-climbing": (layout_with(set_index(lambda index: index["manifests"][0].update(
        digest="sha256:../../../../etc/passwd"))), "is not a sha256 digest"),
    "oci-digest-sha512": (layout_with(set_index(lambda index: index["manifests"][0].update(
        digest="sha512:" + "0" * 128))), "is not a sha256 digest"),
    "oci-manifest-missing": (layout_with(lambda _, parts: parts["manifest_path"].unlink()),
                             "cannot open blobs/sha256/"),
    "oci-manifest-altered": (layout_with(lambda _, parts: parts["manifest_path"].write_bytes(
        parts["manifest_path"].read_bytes() + b" ")), "content does not match its digest"),
    "oci-manifest-size-wrong": (layout_with(set_index(
        lambda index: index["manifests"][0].update(size=1))), "size does not match"),
    "oci-manifest-media-type": (layout_with(rewrite_manifest(
        lambda document: document.update(mediaType="application/x-evil"))),
        "unsupported media type 'application/x-evil'"),
    # Found by tests/test_fuzz_archives.py: an unhashable media type was an internal error.
    "oci-manifest-media-type-a-list": (layout_with(rewrite_manifest(
        lambda document: document.update(mediaType=[""]))), "mediaType [''] is not a string"),
    "oci-config-missing": (layout_with(lambda _, parts: parts["config_path"].unlink()),
                           "cannot open blobs/sha256/"),
    "oci-config-altered": (layout_with(lambda _, parts: parts["config_path"].write_bytes(
        parts["config_path"].read_bytes().replace(b"amd64", b"arm64"))),
        "content does not match its digest"),
    "oci-layer-missing": (layout_with(lambda _, parts: parts["layer_path"].unlink()),
                          "cannot open blobs/sha256/"),
    "oci-layer-size-wrong": (layout_with(rewrite_manifest(
        lambda document: document["layers"][0].update(size=document["layers"][0]["size"] + 1))),
        "bytes where its descriptor says"),
    "oci-indexes-nested-too-deep": (layout_with(nested_indexes(5)), "nested too deeply"),
    "oci-no-image-for-this-platform": (layout_with(nested_indexes(1, {"os": "windows",
                                                                      "architecture": "amd64"})),
                                       "no image for linux/"),
    "oci-tar-blob-symlinked-out": (layout_with(blob_symlink_out, as_tar=True), "leaves the"),
}


@pytest.mark.parametrize(("make", "message"), LOAD_FILES.values(), ids=LOAD_FILES.keys())
def test_a_bad_file_to_load_is_refused(pydock: Pydock, tmp_path: Path, layers: list[Layer],
                                       make: BadArchive, message: str) -> None:
    source = make(tmp_path, layers)
    refused_unchanged(pydock, ["image", "load", "-i", str(source)], message)
