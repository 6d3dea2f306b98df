"""Fuzzing what pydock reads from a user: layer tarballs (``image import``), docker archives
and OCI layouts (``image load``), mutated at random where an attacker would:

- in the tar headers, with the header checksums made right again (or not), truncated,
  gzip'd;
- in the JSON documents (an archive's ``manifest.json``, an OCI ``index.json``, image
  manifest and config): a value replaced by a hostile one (a path out, a digest of another
  algorithm, a huge number, another type) or removed, with every digest that names the
  document made right again, so that the mutation reaches the parser instead of stopping
  at a digest check.

Whatever the bytes, pydock either takes them or refuses them in one line with exit 125:
no traceback, no internal error, no mount left, and a refusal leaves the storage root as
it was. The suite runs a short, deterministic pass; a long one is::

    PYDOCK_FUZZ_EXAMPLES=2000 PYDOCK_FUZZ_RANDOM=1 .venv/bin/pytest tests/test_fuzz_archives.py -s

which prints how many inputs were taken and how many refused.
"""

from __future__ import annotations

import collections
import copy
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Layer, docker_archive, make_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import dir_, link, reg, sym, tar_bytes, tree, whiteout, write_tar

EXAMPLES = int(os.environ.get("PYDOCK_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                derandomize=not os.environ.get("PYDOCK_FUZZ_RANDOM"),
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])
LAYER = tar_bytes([dir_("etc"), reg("etc/motd", b"hello\n"), link("etc/motd.2", "etc/motd"),
                   dir_("bin"), sym("bin/sh", "busybox"), whiteout("etc/gone"),
                   dir_("usr/lib/deep/er"), reg("usr/lib/deep/er/file", b"x" * 3000, 0o755)])
outcomes: collections.Counter[str] = collections.Counter()


def header_offsets(archive: bytes) -> list[int]:
    """Where each member's header block starts (PAX and GNU headers included)."""
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [member.offset for member in tar.getmembers()]


@st.composite
def mutated(draw: st.DrawFn, archive: bytes) -> bytes:
    """``archive`` with bytes of its headers changed (checksums made right again, mostly),
    perhaps truncated, perhaps gzip'd."""
    data = bytearray(archive)
    headers = header_offsets(archive)
    touched = set()
    for _ in range(draw(st.integers(1, 6))):
        header = draw(st.sampled_from(headers))
        position = header + draw(st.integers(0, 511))
        data[position] = draw(st.integers(0, 255))
        touched.add(header)
    if draw(st.booleans()) or draw(st.booleans()):
        for header in touched:
            block = data[header:header + 512]
            block[148:156] = b" " * 8
            data[header + 148:header + 156] = b"%06o\0 " % sum(block)
    if draw(st.integers(0, 4)) == 0:
        del data[draw(st.integers(0, len(data))):]
    return gzip.compress(bytes(data), mtime=0) if draw(st.booleans()) else bytes(data)


def taken_or_refused(pydock: Pydock, command: Callable[[], list[str]]) -> None:
    """Run ``pydock COMMAND``: success, or one line and 125 with the root unchanged."""
    before = manifest(pydock.root)
    result = pydock(*command())
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, (
        result.stderr)
    if result.returncode == 0:
        outcomes["taken"] += 1
    else:
        outcomes["refused"] += 1
        assert result.returncode == 125, result.stderr
        assert result.stderr.startswith("pydock: ") and result.stderr.count("\n") == 1, (
            result.stderr)
        assert diff_manifests(before, manifest(pydock.root)) == []
    assert mounts_under(pydock.root) == []


@pytest.fixture
def fresh_outcomes() -> Iterator[collections.Counter[str]]:
    outcomes.clear()
    yield outcomes
    print(f"\nfuzz: {outcomes['taken']} taken, {outcomes['refused']} refused")


@pytest.mark.primed
def test_a_mutated_layer_tarball_is_taken_or_refused_cleanly(
        pydock: Pydock, tmp_path: Path, fresh_outcomes: collections.Counter[str]) -> None:
    path = tmp_path / "layer.tar"

    @FUZZ
    @given(mutated(LAYER))
    def attempt(archive: bytes) -> None:
        path.write_bytes(archive)
        taken_or_refused(pydock, lambda: ["image", "import", str(path), "fuzzed:1"])

    attempt()
    # The mutations are neither all fatal nor all harmless: both paths were exercised.
    assert fresh_outcomes["taken"] and fresh_outcomes["refused"], fresh_outcomes


def seed_archive(kind: str, directory: Path, layers: list[Layer]) -> Path:
    """A valid image archive to mutate: a docker archive, or a tar of an OCI layout."""
    if kind == "docker":
        docker_archive(directory / "seed.tar", layers, ["fuzzed:1"])
        return directory / "seed.tar"
    write_oci_layout(directory / "layout", layers, *oci_documents(layers))
    return write_tar(directory / "seed.tar", tree(directory / "layout"))


@pytest.mark.primed
@pytest.mark.parametrize("kind", ["docker", "oci"])
def test_a_mutated_image_archive_is_taken_or_refused_cleanly(
        pydock: Pydock, tmp_path: Path, layers: list[Layer], kind: str,
        fresh_outcomes: collections.Counter[str]) -> None:
    seed = seed_archive(kind, tmp_path, layers)
    path = tmp_path / "archive.tar"

    @FUZZ
    @given(mutated(seed.read_bytes()))
    def attempt(archive: bytes) -> None:
        path.write_bytes(archive)
        taken_or_refused(pydock, lambda: ["image", "load", "-i", str(path)])

    attempt()
    assert fresh_outcomes["taken"] and fresh_outcomes["refused"], fresh_outcomes


# -- the JSON documents, mutated with their digests made right again ----------------------

REMOVED = object()  # a value that means: the key (or list item) is removed
HOSTILE_STRINGS = [
    "", "../../../../etc/passwd", "/etc/shadow", "blobs/sha256/../../../etc",
    "sha256:" + "0" * 64, "sha256:../../../etc/passwd", "sha256:" + "A" * 64,
    "sha512:" + "0" * 128, "md5:00", "sha256:", "x" * 70_000, "\0\n\x1b[31m",
    "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "arm64", "windows",
    "localhost/x:1", "UPPER/case:1", "a:b:c", "@sha256:", "layers", "0aaa/layer.tar",
]
hostile_values = st.one_of(
    st.just(REMOVED), st.none(), st.booleans(), st.sampled_from(HOSTILE_STRINGS),
    st.integers(-(1 << 70), 1 << 70), st.sampled_from([-1, 0, 1, 2, 1 << 31, 1 << 63]),
    st.floats(allow_nan=True), st.text(max_size=12),
    st.lists(st.sampled_from(HOSTILE_STRINGS), max_size=3),
    st.dictionaries(st.sampled_from(["digest", "size", "mediaType", "urls"]),
                    st.sampled_from(HOSTILE_STRINGS), max_size=2),
)


def places(document: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """The path of every value in ``document``, itself first."""
    yield at
    items = document.items() if isinstance(document, dict) else (
        enumerate(document) if isinstance(document, list) else ())
    for key, value in items:
        yield from places(value, (*at, key))


@st.composite
def mutated_document(draw: st.DrawFn, document: Any) -> Any:
    """``document`` with one to three of its values replaced by hostile ones, or removed."""
    document = copy.deepcopy(document)
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.sampled_from(list(places(document))))
        value = draw(hostile_values)
        if not at:
            document = None if value is REMOVED else value
            continue
        parent = document
        for key in at[:-1]:
            parent = parent[key]
        if value is REMOVED:
            del parent[at[-1]]
        else:
            parent[at[-1]] = value
    return document


def one_mutated(documents: dict[str, Any]) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """The name of one of ``documents`` and all of them, that one mutated."""
    return st.sampled_from(list(documents)).flatmap(lambda name: st.tuples(
        st.just(name), mutated_document(documents[name]).map(
            lambda document: documents | {name: document})))


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


def digest_and_size(data: bytes) -> dict[str, Any]:
    return {"digest": f"sha256:{hashlib.sha256(data).hexdigest()}", "size": len(data)}


def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
    return {"mediaType": media_type, **digest_and_size(data)}


def oci_documents(layers: list[Layer]) -> tuple[Any, Any, Any]:
    """An OCI image's index, manifest and config, as tests/helpers.py's oci_layout has them."""
    config = json.loads(make_config(layers))
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": descriptor(encoded(config), "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(layer.blob, "application/vnd.oci.image.layer.v1.tar")
                   for layer in layers]}
    index = {"schemaVersion": 2, "manifests": [
        {**descriptor(encoded(manifest), "application/vnd.oci.image.manifest.v1+json"),
         "annotations": {"org.opencontainers.image.ref.name": "localhost/fuzzed:1"}}]}
    return index, manifest, config


def relinked(index: Any, manifest: Any, config: Any, mutated: str) -> tuple[Any, Any]:
    """The index and manifest with the descriptors of the documents below the ``mutated``
    one made right again (where those descriptors are still where they were)."""
    if mutated == "config":
        manifest = copy.deepcopy(manifest)
        manifest["config"].update(digest_and_size(encoded(config)))
    if mutated in ("config", "manifest"):
        index = copy.deepcopy(index)
        index["manifests"][0].update(digest_and_size(encoded(manifest)))
    return index, manifest


def write_oci_layout(directory: Path, layers: list[Layer], index: Any, manifest: Any,
                     config: Any) -> None:
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for data in (*(layer.blob for layer in layers), encoded(manifest), encoded(config)):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (directory / "index.json").write_bytes(encoded(index))


@pytest.mark.primed
def test_an_oci_layout_with_mutated_documents_is_taken_or_refused_cleanly(
        pydock: Pydock, tmp_path: Path, layers: list[Layer],
        fresh_outcomes: collections.Counter[str]) -> None:
    documents = dict(zip(("index", "manifest", "config"), oci_documents(layers), strict=True))
    attempts = iter(range(1 << 30))

    @FUZZ
    @given(one_mutated(documents))
    def attempt(mutation: tuple[str, dict[str, Any]]) -> None:
        name, changed = mutation
        index, manifest = relinked(changed["index"], changed["manifest"], changed["config"],
                                   name)
        layout = tmp_path / f"layout{next(attempts)}"
        write_oci_layout(layout, layers, index, manifest, changed["config"])
        taken_or_refused(pydock, lambda: ["image", "load", "-i", str(layout)])

    attempt()
    assert fresh_outcomes["refused"], fresh_outcomes


CONFIG_NAME = "the config's name"  # in manifest.json, until the config is written


@pytest.mark.primed
def test_a_docker_archive_with_mutated_documents_is_taken_or_refused_cleanly(
        pydock: Pydock, tmp_path: Path, layers: list[Layer],
        fresh_outcomes: collections.Counter[str]) -> None:
    documents = {"config": json.loads(make_config(layers)), "manifest.json": [{
        "Config": CONFIG_NAME, "RepoTags": ["fuzzed:1"],
        "Layers": [f"{n}aaa/layer.tar" for n in range(len(layers))]}]}
    path = tmp_path / "archive.tar"

    @FUZZ
    @given(one_mutated(documents))
    def attempt(mutation: tuple[str, dict[str, Any]]) -> None:
        _, changed = mutation
        config = encoded(changed["config"])
        config_name = f"{hashlib.sha256(config).hexdigest()}.json"
        manifest = encoded(changed["manifest.json"]).replace(
            encoded(CONFIG_NAME), encoded(config_name))
        write_tar(path, [
            *(reg(f"{n}aaa/layer.tar", layer.blob) for n, layer in enumerate(layers)),
            reg(config_name, config), reg("manifest.json", manifest)])
        taken_or_refused(pydock, lambda: ["image", "load", "-i", str(path)])

    attempt()
    assert fresh_outcomes["refused"], fresh_outcomes
