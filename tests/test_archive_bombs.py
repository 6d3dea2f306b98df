"""Archive bombs: tiny files that claim gigabytes, given to ``image import`` and ``image load``.

Each bomb is generated here, a few kilobytes to a megabyte, and each test runs where a
regression fails instead of taking the machine: the storage root on a 64 MiB tmpfs (a bomb
that is written out fills it, and is refused with ENOSPC instead of with its own message),
and the CLI's peak memory measured. A refusal is one line, and leaves the storage root
as it was (helpers.refused_unchanged). The budgets are :mod:`pydock.core.layers.budget`'s.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import resource
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Layer, docker_archive, pydock_on_copy, refused_unchanged

from pydock.core.errors import PydockError
from pydock.core.layers import budget
from pydock.core.layers.pack import write_layer_tar
from pydock.core.layers.unpack import extract_tar
from pydock.testing.bombs import (
    MiB,
    extended_header_bomb,
    gzip_file,
    header,
    many_members_bomb,
    sparse_bomb,
    trailing_zeros_bomb,
)
from pydock.testing.cli import Pydock
from pydock.testing.tar import reg, tar_bytes

_STORE_SIZE = 64 * MiB


@pytest.fixture
def pydock(primed_root: Path, tmp_path: Path) -> Iterator[Pydock]:
    """conftest's fixture, with the storage root on a small tmpfs of its own."""
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={_STORE_SIZE}", "bombs", str(small)],
                   check=True)
    try:
        yield from pydock_on_copy(primed_root, small / "root")
    finally:
        subprocess.run(["umount", str(small)], check=True)


def used(pydock: Pydock) -> int:
    fs = os.statvfs(pydock.root)
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize


def peak_memory(run: Callable[[], str]) -> tuple[str, int]:
    """``run()``'s result and the peak RSS, in bytes, of the processes it ran: measured in a
    forked child, whose own children are only those."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            result = [run(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024]
        except BaseException as e:  # handed to the parent, which fails with it
            result = [f"{type(e).__name__}: {e}", -1]
        os.write(write_end, json.dumps(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message, peak = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert peak >= 0, message
    return message, peak


# -- headers: tarfile reads an extended header whole, into memory ---------------------------


def test_a_gigantic_pax_header_is_refused_before_it_is_read(pydock: Pydock,
                                                            tmp_path: Path) -> None:
    # The report's 1 MiB of gzip holding a 1 GiB PAX header took 3.3 GB of RSS as tarfile
    # read it; a quarter of that takes about 800 MB, and some 20 MB refused from its header.
    claimed = 256 * MiB
    bomb = extended_header_bomb(tmp_path / "pax.tar.gz", claimed)
    assert bomb.stat().st_size < 2 * MiB
    message, peak = peak_memory(lambda: refused_unchanged(
        pydock, ["image", "import", str(bomb), "bomb"], f"a {claimed}-byte extended header"))
    assert "more than the 1048576 allowed" in message
    assert peak < 128 * MiB


@pytest.mark.parametrize("kind", [tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK,
                                  tarfile.XGLTYPE], ids=["long-name", "long-link", "global-pax"])
def test_a_gnu_long_name_or_global_header_over_a_mebibyte_is_refused(
        pydock: Pydock, tmp_path: Path, kind: bytes) -> None:
    size = budget.MAX_HEADER + 1
    bomb = gzip_file(tmp_path / "long.tar.gz", header("././@LongLink", kind, size), size,
                     tar_bytes([reg("after", b"x")]))
    refused_unchanged(pydock, ["image", "import", str(bomb), "bomb"],
                      f"a {size}-byte extended header at byte 0")


@pytest.mark.needs_root
def test_the_member_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A million members is far beyond a real layer and cheap to compress; a smaller cap here
    # tests the same code without writing a million files.
    monkeypatch.setattr(budget, "MAX_MEMBERS", 10)
    with pytest.raises(PydockError, match="more than 10 members"):
        extract_tar(io.BytesIO(tar_bytes([reg(f"f{n}") for n in range(11)])), tmp_path)


def growth_of_peak_memory(work: Callable[[], None]) -> int:
    """How far ``work()`` raises the peak RSS of a forked child running it, in bytes."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_end)
        try:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            work()
            result = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
        except BaseException:
            result = -1
        os.write(write_end, str(result).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        growth = int(pipe.read())
    os.waitpid(pid, 0)
    assert growth >= 0, "the work failed"
    return growth


@pytest.mark.needs_root
def test_a_layer_of_many_members_is_read_and_written_in_bounded_memory(tmp_path: Path) -> None:
    # tarfile keeps every header it reads or writes, and a directory listed with a stat
    # result per entry holds some 600 bytes an entry: 40,000 members took 21 MB more to
    # extract and 29 MB more to write back as a tar (2 and 10 MB now); a million, 25 times.
    bomb = many_members_bomb(tmp_path / "many.tar.gz", 40_000)
    layer = tmp_path / "layer"
    layer.mkdir()

    def extract() -> None:
        with gzip.open(bomb) as stream:
            extract_tar(stream, layer)

    def pack() -> None:
        with open(os.devnull, "wb") as out:
            write_layer_tar(out, layer)

    assert growth_of_peak_memory(extract) < 12 * MiB
    assert growth_of_peak_memory(pack) < 24 * MiB


# -- sparse members: holes stay holes -------------------------------------------------------


def test_sparse_members_are_written_sparse(pydock: Pydock, tmp_path: Path) -> None:
    # Each claims most of the store: written out, the first fills it and the second is
    # refused; written sparse, all of them take a few blocks.
    claimed = _STORE_SIZE * 3 // 4
    bomb = sparse_bomb(tmp_path / "sparse.tar", claimed, 4)
    before = used(pydock)
    pydock.ok("image", "import", str(bomb), "sparse")
    assert used(pydock) - before < 4 * MiB
    [diff] = [d for d in pydock.root.glob("layers/*/diff") if (d / "sparse0").exists()]
    for n in range(4):
        path = diff / f"sparse{n}"
        assert path.stat().st_size == claimed
        assert path.stat().st_blocks * 512 < 64 * 1024
        with path.open("rb") as file:
            assert file.read(513) == b"x" * 512 + b"\0"
            file.seek(claimed - 513)
            assert file.read() == b"\0" + b"x" * 512


def gnu_sparse_map_chain(blocks: int) -> bytes:
    """An old-GNU sparse member ('S') whose map goes on for ``blocks`` extension blocks."""
    head = bytearray(header("chained", tarfile.GNUTYPE_SPARSE, 0))
    head[257:265] = b"ustar  \0"  # GNU's magic: the map fields are GNU's
    head[482] = 1  # isextended: a map block follows
    head[148:156] = b"        "
    head[148:156] = b"%06o\0 " % sum(head)
    more = bytearray(512)
    more[504] = 1
    return bytes(head) + bytes(more) * blocks + bytes(512) + bytes(1024)


def pax_sparse_map(entries: int) -> bytes:
    """A GNU sparse member, PAX format 1.0, whose map in its data has ``entries`` blocks."""
    data = b"%d\n" % entries + b"0\n1\n" * entries
    return tar_bytes([reg("mapped", data, pax_headers={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "mapped",
        "GNU.sparse.realsize": "1"})])


@pytest.mark.parametrize("layer", [gnu_sparse_map_chain(2100), pax_sparse_map(300_000)],
                         ids=["old-gnu-map-chain", "pax-1.0-map"])
def test_a_sparse_map_over_a_mebibyte_is_refused(pydock: Pydock, tmp_path: Path,
                                                 layer: bytes) -> None:
    # Each map entry is a tuple in memory, several times the bytes it takes in the stream.
    (tmp_path / "map.tar").write_bytes(layer)
    refused_unchanged(pydock, ["image", "import", str(tmp_path / "map.tar"), "bomb"],
                      "a sparse map of more than 1048576 bytes")


@pytest.mark.needs_root
def test_a_sparse_map_holding_more_data_than_stored_is_refused(tmp_path: Path) -> None:
    # Read as file data, the next members' headers would end up in the file.
    member = reg("short", b"x" * 512, pax_headers={
        "GNU.sparse.major": "0", "GNU.sparse.minor": "1", "GNU.sparse.name": "short",
        "GNU.sparse.size": str(MiB), "GNU.sparse.map": f"0,1000,{MiB - 5000},5000"})
    with pytest.raises(PydockError, match="'short': its sparse map holds more data than"):
        extract_tar(io.BytesIO(tar_bytes([member, reg("after", b"x" * 8192)])), tmp_path)


# -- decompression: more than the members declare, more than the ratio ---------------------


def test_zeros_after_the_end_of_a_layer_are_refused(pydock: Pydock, tmp_path: Path) -> None:
    # A gzip of one small member, then 256 MiB of zeros: tarfile stops at the end marker,
    # and the rest was read (and hashed) to its end.
    bomb = trailing_zeros_bomb(tmp_path / "padded.tar.gz", 256 * MiB)
    refused_unchanged(pydock, ["image", "import", str(bomb), "bomb"],
                      "bytes after its end, far more than its members declare")


def test_an_outer_archive_of_zeros_is_not_decompressed_to_disk(pydock: Pydock,
                                                              tmp_path: Path) -> None:
    # 3 GB of zeros in the report; decompressed whole to a temporary file, 256 MiB would
    # fill the 64 MiB store.
    bomb = gzip_file(tmp_path / "outer.tar.gz", 256 * MiB)
    refused_unchanged(pydock, ["image", "load", "-i", str(bomb)],
                      "bytes after its end, far more than its members declare")


def test_an_outer_archive_member_larger_than_the_store_is_refused_before_copying(
        pydock: Pydock, tmp_path: Path) -> None:
    claimed = 256 * MiB
    bomb = gzip_file(tmp_path / "outer.tar.gz", header("manifest.json", tarfile.REGTYPE,
                                                       claimed), claimed, bytes(1024))
    refused_unchanged(pydock, ["image", "load", "-i", str(bomb)],
                      f"'manifest.json' claims {claimed} bytes, more than the")


def zeros_layer_archive(tmp_path: Path, size: int) -> Path:
    """A docker archive of one gzip'd layer holding a file of ``size`` zero bytes."""
    layer = tar_bytes([reg("zeros", bytes(size))])
    docker_archive(tmp_path / "image.tar", [Layer(layer, gzip.compress(layer, mtime=0))],
                   ["zeros:latest"])
    return tmp_path / "image.tar"


def test_a_layer_past_the_expansion_ratio_is_refused_unless_lifted(pydock: Pydock,
                                                                  tmp_path: Path) -> None:
    # 24 MiB of zeros gzip to 100 KiB: past the 16 MiB always allowed and 100 times that.
    archive = zeros_layer_archive(tmp_path, 24 * MiB)
    message = refused_unchanged(pydock, ["image", "load", "-i", str(archive)],
                                "layer 0aaa/layer.tar: decompresses to more than 16777216 bytes")
    assert f"set {budget.EXPANSION_ENV} to allow more" in message
    # An honest image this compressible is loaded with the limit lifted.
    result = pydock("image", "load", "-i", str(archive), env={budget.EXPANSION_ENV: "0"})
    assert result.returncode == 0, result.stderr
    assert pydock.ok("image", "ls").count("\nzeros ") == 1


def test_a_bad_expansion_ratio_is_refused(pydock: Pydock, tmp_path: Path) -> None:
    archive = gzip_file(tmp_path / "small.tar.gz", tar_bytes([reg("f", b"x")]))
    pydock.refused("image", "import", str(archive), "small",
                   env={budget.EXPANSION_ENV: "lots"}, match=f"{budget.EXPANSION_ENV}='lots'")
