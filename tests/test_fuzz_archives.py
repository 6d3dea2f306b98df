"""Fuzzing what pydock reads from a user: layer tarballs (``image import``) and docker
archives (``image load``), mutated at random where an attacker would: in the tar headers,
with the header checksums made right again (or not), truncated, gzip'd.

Whatever the bytes, pydock either takes them or refuses them in one line with exit 125:
no traceback, no internal error, no mount left, and a refusal leaves the storage root as
it was. The suite runs a short, deterministic pass; a long one is::

    PYDOCK_FUZZ_EXAMPLES=2000 PYDOCK_FUZZ_RANDOM=1 .venv/bin/pytest tests/test_fuzz_archives.py -s

which prints how many inputs were taken and how many refused.
"""

from __future__ import annotations

import collections
import gzip
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Layer, docker_archive
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import dir_, link, reg, sym, tar_bytes, whiteout

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


@pytest.mark.primed
def test_a_mutated_docker_archive_is_taken_or_refused_cleanly(
        pydock: Pydock, tmp_path: Path, layers: list[Layer],
        fresh_outcomes: collections.Counter[str]) -> None:
    seed = tmp_path / "seed.tar"
    docker_archive(seed, layers, ["fuzzed:1"])
    path = tmp_path / "archive.tar"

    @FUZZ
    @given(mutated(seed.read_bytes()))
    def attempt(archive: bytes) -> None:
        path.write_bytes(archive)
        taken_or_refused(pydock, lambda: ["image", "load", "-i", str(path)])

    attempt()
    assert fresh_outcomes["taken"] and fresh_outcomes["refused"], fresh_outcomes
