"""Tests for pydock.core.layers.unpack: a hostile layer stays inside its directory.

Archives built to write, link, whiteout or make devices outside the layer (through
symlinks, hardlinks, absolute names and "..") are either refused or contained, and leave
everything outside as it was; a member refused names itself, on one line.

How an honest layer comes out is in test_archive_fidelity, OCI whiteouts in
test_archive_whiteouts, compression and corrupt streams in test_archive_compression.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import extract

from pydock.core.errors import PydockError
from pydock.testing.tar import Member, dir_, link, node, reg, sym

pytestmark = pytest.mark.quick

UP = "../" * 20  # more than enough to climb from any test directory to /


# Ported from containerd's pkg/archive TestBreakouts. Each case builds an archive aimed at
# ``outside``, a sentinel directory next to the layer; OUT is its absolute path without the
# leading "/", so "/" + OUT and UP + OUT both reach it for an extractor that resolves paths
# on the host. ``expect`` is None when the archive must be refused, else a path that must
# exist in the layer afterwards (where the write was contained).


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about the files under root, except those under skip."""
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip:
            dirnames.clear()
            continue
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if path == str(skip):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                extra: object = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                extra = Path(path).read_bytes()
            else:
                extra = None
            result[path] = (st.st_mode, st.st_uid, st.st_ino, st.st_nlink, st.st_mtime_ns, extra)
    return result


Breakout = Callable[[str], list[Member]]

BREAKOUTS: list[tuple[str, Breakout, str | None]] = [
    (
        "symlink-absolute-then-write",
        lambda out: [sym("l", "/" + out), reg("l/evil", b"x")],
        None,  # "/OUT" does not exist inside the layer, and is not created through l
    ),
    (
        "symlink-absolute-existing-in-layer",
        lambda out: [dir_(out), sym("l", "/" + out), reg("l/evil", b"x")],
        "{out}/evil",
    ),
    (
        "symlink-up-and-out",
        lambda out: [dir_(out), sym("l", UP + out), reg("l/evil", b"x")],
        "{out}/evil",
    ),
    (
        "symlink-dotdot-chain",
        lambda out: [sym("a", "../"), sym("b", "a/../a/.."), reg("b/evil", b"x")],
        "evil",
    ),
    (
        "symlink-to-root",
        lambda out: [sym("l", "/"), reg(f"l/{out}/evil", b"x")],
        "{out}/evil",
    ),
    (
        "symlink-nested-up-and-out",
        lambda out: [dir_("a"), sym("a/up", "../.."), reg(f"a/up/{UP}{out}/evil", b"x")],
        None,  # refused: the name itself contains ".."
    ),
    (
        "symlink-in-subdir-up-and-out",
        lambda out: [dir_("a/b"), sym("a/b/up", UP), reg(f"a/b/up/{out}/evil", b"x")],
        "{out}/evil",
    ),
    (
        "file-over-symlink-to-outside-file",
        lambda out: [sym("f", f"/{out}/secret"), reg("f", b"pwned")],
        "f",
    ),
    (
        "file-over-relative-symlink-to-outside-file",
        lambda out: [sym("f", f"{UP}{out}/secret"), reg("f", b"pwned")],
        "f",
    ),
    (
        "absolute-name",
        lambda out: [reg(f"/{out}/evil", b"x")],
        "{out}/evil",
    ),
    (
        "dotdot-name",
        lambda out: [reg(f"{UP}{out}/evil", b"x")],
        None,
    ),
    (
        "dotdot-inside-name",
        lambda out: [dir_("a"), reg(f"a/../../{out}/evil", b"x")],
        None,
    ),
    (
        "dotdot-directory-name",
        lambda out: [dir_(f"{UP}{out}/evil", mode=0o777)],
        None,
    ),
    (
        "hardlink-absolute",
        lambda out: [link("h", f"/{out}/secret")],
        None,
    ),
    (
        "hardlink-dotdot",
        lambda out: [link("h", f"{UP}{out}/secret")],
        None,
    ),
    (
        "hardlink-through-symlink-to-outside-dir",
        lambda out: [sym("l", "/" + out), link("h", "l/secret"), reg("h", b"pwned")],
        None,
    ),
    (
        "hardlink-to-symlink-to-outside-then-write",
        lambda out: [sym("s", f"/{out}/secret"), link("h", "s"), reg("h", b"pwned")],
        "h",
    ),
    (
        "hardlink-to-relative-symlink-to-outside",
        lambda out: [sym("s", f"{UP}{out}/secret"), link("h", "s")],
        "h",
    ),
    (
        "hardlink-to-symlink-then-write-under-it",
        lambda out: [sym("s", "/" + out), link("h", "s"), reg("h/evil", b"x")],
        None,
    ),
    (
        "symlink-loop",
        lambda out: [sym("loop", "loop"), reg("loop/evil", b"x")],
        None,
    ),
    (
        "symlink-loop-pair",
        lambda out: [sym("a", "b"), sym("b", "a"), reg("a/evil", b"x")],
        None,
    ),
    (
        "write-through-symlink-planted-earlier",
        lambda out: [dir_("a"), sym("a/b", "/" + out), reg("a/b/secret", b"pwned")],
        None,
    ),
    (
        "write-through-symlink-planted-earlier-to-layer-dir",
        lambda out: [dir_("d"), sym("a", "/d"), reg("a/secret", b"x")],
        "d/secret",
    ),
    (
        "directory-replaced-by-symlink-then-written",
        lambda out: [dir_("d"), reg("d/x"), sym("d", "/" + out), reg("d/secret", b"pwned")],
        None,
    ),
    (
        "directory-replaced-by-symlink-to-root-then-written",
        lambda out: [dir_("d"), reg("d/x"), sym("d", "/"), reg(f"d/{out}/evil", b"x")],
        "{out}/evil",
    ),
    (
        "symlink-replaced-by-directory",
        lambda out: [sym("d", "/" + out), dir_("d"), reg("d/secret", b"x")],
        "d/secret",
    ),
    (
        "directory-with-outside-symlinks-replaced-by-file",
        lambda out: [
            dir_("d"),
            sym("d/dir", "/" + out),
            sym("d/up", UP + out),
            sym("d/file", f"/{out}/secret"),
            reg("d", b"file now"),
        ],
        "d",
    ),
    (
        "directory-replaced-by-directory-through-symlink",
        lambda out: [sym("l", "/" + out), dir_("l", mode=0o777), reg("l/evil", b"x")],
        "l/evil",
    ),
    (
        "device-through-symlink",
        lambda out: [sym("l", "/" + out), node("l/null", tarfile.CHRTYPE, 0o666)],
        None,
    ),
    (
        "whiteout-through-symlink",
        lambda out: [sym("l", "/" + out), reg("l/.wh.secret")],
        None,
    ),
    (
        "whiteout-through-symlink-up-and-out",
        lambda out: [dir_(out), reg(f"{out}/secret"), sym("l", UP + out), reg("l/.wh.secret")],
        "{out}/secret",
    ),
    (
        "whiteout-of-symlink-to-outside-dir",
        lambda out: [sym("l", "/" + out), reg(".wh.l")],
        "l",
    ),
    (
        "opaque-through-symlink",
        lambda out: [sym("l", f"{UP}{out}/dir"), reg("l/.wh..wh..opq")],
        None,
    ),
    (
        "opaque-through-symlink-to-root",
        lambda out: [sym("l", "/"), reg(f"l/{out}/dir/.wh..wh..opq")],
        "{out}/dir",
    ),
]


@pytest.mark.needs_root
@pytest.mark.parametrize(
    ("build", "expect"), [c[1:] for c in BREAKOUTS], ids=[c[0] for c in BREAKOUTS]
)
def test_breakout(tmp_path: Path, dest: Path, build: Breakout, expect: str | None) -> None:
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"secret")
    out = str(outside).lstrip("/")
    before = _snapshot(tmp_path, dest)

    if expect is None:
        with pytest.raises(PydockError):
            extract(build(out), dest)
    else:
        extract(build(out), dest)
        assert os.path.lexists(dest / expect.format(out=out))

    assert _snapshot(tmp_path, dest) == before


@pytest.mark.needs_root
def test_writing_a_hardlinked_symlink_replaces_it(tmp_path: Path, dest: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    extract([sym("f", str(secret)), link("h", "f"), reg("h", b"new")], dest)
    assert (dest / "h").read_bytes() == b"new"
    assert os.readlink(dest / "f") == str(secret)
    assert secret.read_bytes() == b"secret"


@pytest.mark.needs_root
@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([reg("../x")], "'../x': the name contains '..'"),
        ([link("h", "a/../../x")], "hardlink target 'a/../../x' contains '..'"),
        ([sym("l", "/nowhere"), reg("l/evil")], "'l' is a symlink to nothing"),
        ([link("h", "missing")], "not in the layer"),
        ([dir_("d"), link("h", "d")], "is a directory"),
        ([link("h", ".")], "is a directory"),
        ([sym(".", "/etc")], "root"),
        ([node("v", b"V", 0o644)], "unsupported member type"),
        ([reg("f", uid=2**32 - 1)], "out of range"),
        ([reg("f", pax_headers={"mtime": "nan"})], "'f': invalid mtime 'nan'"),
        ([sym("s", "x", pax_headers={"linkpath": "a\0b"})], "'s'"),
    ],
    ids=[
        "dotdot",
        "hardlink-dotdot",
        "dangling-parent",
        "hardlink-missing",
        "hardlink-dir",
        "hardlink-root",
        "root-not-dir",
        "unknown-type",
        "uid-minus-one",
        "mtime-nan",
        "nul-in-linkname",
    ],
)
def test_refused_member_is_named(dest: Path, entries: list[Member], message: str) -> None:
    with pytest.raises(PydockError, match=message) as excinfo:
        extract(entries, dest)
    assert "\n" not in str(excinfo.value)
