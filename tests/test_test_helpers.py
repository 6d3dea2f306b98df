"""The checks and builders other tests rely on: a check that cannot fail, or a builder that
writes something else than it says, would let every test that uses it pass for nothing."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from pydock.testing.cli import Pydock
from pydock.testing.tar import dir_, link, node, opaque, reg, sym, tar_bytes, tree, whiteout

pytestmark = pytest.mark.quick


def test_refused_returns_the_one_line_and_insists_on_each_part(tmp_path: Path) -> None:
    cli = Pydock(tmp_path / "root")
    message = cli.refused("ps", "--format", "yaml", match="'yaml' is not one of")
    assert message.startswith("Invalid value for '--format'") and "\n" not in message
    with pytest.raises(AssertionError, match="exited 0"):
        cli.refused("ps")
    with pytest.raises(AssertionError, match="exited 125"):
        cli.refused("ps", "--format", "yaml", code=1)
    with pytest.raises(AssertionError, match="'nothing like it' not in the message"):
        cli.refused("ps", "--format", "yaml", match="nothing like it")


def test_members_are_written_as_described(tmp_path: Path) -> None:
    members = [dir_("d", 0o750, uid=7, gid=8), reg("d/f", b"data", 0o4755, mtime=5),
               sym("d/s", "f"), link("d/h", "d/f"), node("d/c", tarfile.CHRTYPE, 0o600,
                                                          devmajor=1, devminor=3),
               whiteout("d/gone"), whiteout("top"), opaque("d"),
               reg("x", b"", pax_headers={"SCHILY.xattr.user.k": "v"})]
    data = tar_bytes(members, compress=True)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(data))) as tar:
        seen = {m.name: m for m in tar}
    assert list(seen) == ["d", "d/f", "d/s", "d/h", "d/c", "d/.wh.gone", ".wh.top",
                          "d/.wh..wh..opq", "x"]
    assert (seen["d"].mode, seen["d"].uid, seen["d"].gid) == (0o750, 7, 8)
    assert (seen["d/f"].mode, seen["d/f"].mtime, seen["d/f"].size) == (0o4755, 5, 4)
    assert (seen["d/s"].issym(), seen["d/s"].linkname) == (True, "f")
    assert (seen["d/h"].islnk(), seen["d/h"].linkname) == (True, "d/f")
    assert (seen["d/c"].ischr(), seen["d/c"].devmajor, seen["d/c"].devminor) == (True, 1, 3)
    assert seen["x"].pax_headers["SCHILY.xattr.user.k"] == "v"
    assert tar_bytes(members, compress=True) == data  # the same bytes every time


def test_tree_lists_a_directory_as_tar_does(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f").write_bytes(b"content")
    (tmp_path / "a" / "l").symlink_to("b/f")
    (tmp_path / "a" / "h").hardlink_to(tmp_path / "a" / "b" / "f")
    members = {info.name: (info, data) for info, data in tree(tmp_path / "a")}
    assert list(members) == [".", "b", "b/f", "h", "l"]
    assert members["b/f"][1] == b"content"
    assert (members["h"][0].islnk(), members["h"][0].linkname) == (True, "b/f")
    assert (members["l"][0].issym(), members["l"][0].linkname) == (True, "b/f")
