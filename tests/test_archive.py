"""Tests for pydock.core.layers.unpack: hostile layers stay inside, honest ones come out exactly."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import xattr

from pydock.core.errors import PydockError
from pydock.core.layers.compression import open_tarball
from pydock.core.layers.unpack import extract_tar
from pydock.testing.tar import Member, dir_, link, node, reg, sym, tar_bytes

pytestmark = pytest.mark.quick

UP = "../" * 20  # more than enough to climb from any test directory to /


def extract(entries: list[Member], dest: Path) -> str:
    return extract_tar(io.BytesIO(tar_bytes(entries)), dest)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    path = tmp_path / "dest"
    path.mkdir()
    return path


# --- breakouts --------------------------------------------------------------------------------
#
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


# --- OCI whiteouts -----------------------------------------------------------------------------


def _is_whiteout(path: Path) -> bool:
    st = os.lstat(path)
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and stat.S_IMODE(st.st_mode) == 0


def _opaque(path: Path) -> bytes | None:
    try:
        return xattr.getxattr(str(path), "trusted.overlay.opaque", symlink=True)
    except OSError:
        return None


@pytest.mark.needs_root
def test_whiteouts_become_overlay_whiteouts(dest: Path) -> None:
    extract(
        [
            reg(".wh.top"),
            dir_("d"),
            reg("d/.wh.gone", b"whiteouts have no content, but this one does"),
            reg("implicit/parent/.wh.x"),
            reg("file", b"x"),
            reg(".wh.file"),
            dir_("tree"),
            reg("tree/child"),
            reg(".wh.tree"),
            reg(".wh.twice"),
            reg(".wh.twice"),
        ],
        dest,
    )
    for name in ("top", "d/gone", "implicit/parent/x", "file", "tree", "twice"):
        assert _is_whiteout(dest / name), name
    assert not any(name.startswith(".wh.") for _, _, names in os.walk(dest) for name in names)
    implicit = os.lstat(dest / "implicit/parent")
    assert (stat.S_IMODE(implicit.st_mode), implicit.st_uid) == (0o755, 0)


@pytest.mark.needs_root
def test_opaque_marker_sets_the_xattr_on_its_directory(dest: Path) -> None:
    extract(
        [
            dir_("d", mode=0o700, pax_headers={"SCHILY.xattr.user.kept": "yes"}),
            reg("d/.wh..wh..opq"),
            reg("d/f", b"x"),
            reg("implicit/.wh..wh..opq"),
            dir_("after"),
            reg("after/f"),
            reg("after/.wh..wh..opq"),
            dir_("plain"),
        ],
        dest,
    )
    for name in ("d", "implicit", "after"):
        assert _opaque(dest / name) == b"y", name
    assert _opaque(dest / "plain") is None
    assert xattr.getxattr(str(dest / "d"), "user.kept") == b"yes"
    assert stat.S_IMODE(os.lstat(dest / "d").st_mode) == 0o700
    assert (dest / "d/f").read_bytes() == b"x"
    assert sorted(os.listdir(dest / "d")) == ["f"]
    assert (stat.S_IMODE(os.lstat(dest / "implicit").st_mode), os.lstat(dest / "implicit").st_uid) \
        == (0o755, 0)


@pytest.mark.needs_root
def test_entry_after_its_own_whiteout(dest: Path) -> None:
    # The OCI spec recommends whiteouts before their siblings, and keeps an entry of the same
    # layer: a directory must then also keep hiding the lower layers' directory, so it is opaque.
    extract(
        [
            reg(".wh.dir"),
            dir_("dir", mode=0o750),
            reg("dir/f", b"new"),
            reg(".wh.implicit"),
            reg("implicit/f", b"new"),
            reg(".wh.file"),
            reg("file", b"new"),
        ],
        dest,
    )
    assert _opaque(dest / "dir") == b"y"
    assert stat.S_IMODE(os.lstat(dest / "dir").st_mode) == 0o750
    assert _opaque(dest / "implicit") == b"y"
    assert (dest / "implicit/f").read_bytes() == b"new"
    assert (dest / "file").read_bytes() == b"new"
    assert _opaque(dest / "file") is None


@pytest.mark.needs_root
@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([reg(".wh.")], "'.wh.': '.wh.' is not a valid whiteout"),
        ([reg("d/.wh..")], "'d/.wh..': '.wh..' is not a valid whiteout"),
        ([reg(".wh...")], "'.wh...' is not a valid whiteout"),
        ([reg("d/.wh..wh.plnk")], "unknown whiteout marker '.wh..wh.plnk'"),
        ([reg(".wh..wh..opqx")], "unknown whiteout marker"),
        ([dir_(".wh.d")], "'.wh.d': a whiteout must be a regular file"),
        ([sym(".wh.s", "x")], "a whiteout must be a regular file"),
        ([reg("f"), link(".wh.h", "f")], "a whiteout must be a regular file"),
        ([node(".wh..wh..opq", tarfile.FIFOTYPE, 0o644)], "a whiteout must be a regular file"),
        ([node("fake", tarfile.CHRTYPE, 0o000)], "'fake': a character device 0/0"),
        (
            [dir_("d", pax_headers={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})],
            "'d': xattr 'trusted.overlay.redirect' is overlay metadata",
        ),
        (
            [dir_("d", pax_headers={"SCHILY.xattr.trusted.overlay.opaque": "y"})],
            "xattr 'trusted.overlay.opaque' is overlay metadata",
        ),
        (
            [reg("f", pax_headers={"SCHILY.xattr.trusted.overlay.metacopy": ""})],
            "overlay metadata",
        ),
        ([reg(".wh.f"), link("h", "f")], "hardlink target 'f' is not in the layer"),
        ([reg("f"), reg("f/g")], "'f' is not a directory"),
        ([reg("f"), sym("l", "f"), reg("l/g")], "'l' is a symlink to a non-directory"),
    ],
    ids=[
        "empty",
        "dot",
        "dotdot",
        "other-marker",
        "opq-suffix",
        "directory",
        "symlink",
        "hardlink",
        "fifo-marker",
        "char-0-0",
        "redirect-xattr",
        "opaque-xattr",
        "metacopy-xattr",
        "hardlink-to-whiteout",
        "file-as-parent",
        "symlink-to-file-as-parent",
    ],
)
def test_refused_whiteouts_and_overlay_metadata(
    dest: Path, entries: list[Member], message: str
) -> None:
    with pytest.raises(PydockError, match=message) as excinfo:
        extract(entries, dest)
    assert "\n" not in str(excinfo.value)


@pytest.mark.needs_root
def test_other_character_devices_are_kept(dest: Path) -> None:
    extract([node("zero", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=5),
             node("minor-only", tarfile.CHRTYPE, 0o600, devmajor=0, devminor=7)], dest)
    assert os.lstat(dest / "zero").st_rdev == os.makedev(1, 5)
    assert os.lstat(dest / "minor-only").st_rdev == os.makedev(0, 7)


# --- fidelity ---------------------------------------------------------------------------------


@pytest.mark.needs_root
def test_special_modes_survive_chown(dest: Path) -> None:
    extract(
        [
            reg("setuid", b"#!", mode=0o4755, uid=1234, gid=5678),
            reg("setgid", b"#!", mode=0o2711, uid=1234, gid=5678),
            dir_("sticky", mode=0o1777, uid=1234, gid=5678),
            dir_("sgid-dir", mode=0o2750, uid=1234, gid=5678),
            reg("sgid-dir/inner", mode=0o6500),
            node("fifo", tarfile.FIFOTYPE, 0o4620),
        ],
        dest,
    )
    modes = {
        "setuid": 0o4755,
        "setgid": 0o2711,
        "sticky": 0o1777,
        "sgid-dir": 0o2750,
        "sgid-dir/inner": 0o6500,
        "fifo": 0o4620,
    }
    for name, mode in modes.items():
        assert stat.S_IMODE(os.lstat(dest / name).st_mode) == mode, name


@pytest.mark.needs_root
def test_numeric_owner_ignores_names(dest: Path) -> None:
    owner = {"uid": 1234, "gid": 5678, "uname": "root", "gname": "root"}
    extract(
        [
            dir_("d", **owner),
            reg("d/f", b"x", **owner),
            sym("d/s", "f", **owner),
            node("d/p", tarfile.FIFOTYPE, 0o644, **owner),
            node("d/c", tarfile.CHRTYPE, 0o644, devmajor=1, devminor=3, **owner),
        ],
        dest,
    )
    for name in ("d", "d/f", "d/s", "d/p", "d/c"):
        st = os.lstat(dest / name)
        assert (st.st_uid, st.st_gid) == (1234, 5678), name


@pytest.mark.needs_root
def test_mtimes_and_atimes(dest: Path) -> None:
    extract(
        [
            dir_("d", mtime=1_000_000_000),
            reg("d/f", b"x", mtime=1_100_000_000),
            sym("d/s", "f", mtime=1_200_000_000),
            node("d/p", tarfile.FIFOTYPE, 0o644, mtime=1_300_000_000),
            reg("frac", pax_headers={"mtime": "1234567890.5"}),
            reg("ns", pax_headers={"mtime": "1795800756.414202451"}),
            reg("old", pax_headers={"mtime": "-1.25"}),
        ],
        dest,
    )
    expected = {
        "d": 1_000_000_000 * 10**9,
        "d/f": 1_100_000_000 * 10**9,
        "d/s": 1_200_000_000 * 10**9,
        "d/p": 1_300_000_000 * 10**9,
        "frac": 1_234_567_890_500_000_000,
        "ns": 1_795_800_756_414_202_451,
        "old": -1_250_000_000,
    }
    for name, ns in expected.items():
        st = os.lstat(dest / name)
        assert (st.st_mtime_ns, st.st_atime_ns) == (ns, ns), name


@pytest.mark.needs_root
def test_directory_metadata_is_applied_after_its_children(dest: Path) -> None:
    extract(
        [
            dir_(".", mode=0o750, uid=1234, mtime=1_000_000_000),
            dir_("ro", mode=0o555, mtime=1_100_000_000),
            reg("ro/f", b"x"),
            dir_("ro/sub", mode=0o700, mtime=1_200_000_000),
            reg("ro/sub/g", b"y"),
            reg("implicit/parent/f", b"z"),
        ],
        dest,
    )
    root = os.stat(dest)
    assert (stat.S_IMODE(root.st_mode), root.st_uid, root.st_mtime) == (0o750, 1234, 1_000_000_000)
    ro = os.stat(dest / "ro")
    assert (stat.S_IMODE(ro.st_mode), ro.st_mtime) == (0o555, 1_100_000_000)
    assert os.stat(dest / "ro/sub").st_mtime == 1_200_000_000
    implicit = os.stat(dest / "implicit/parent")
    assert (stat.S_IMODE(implicit.st_mode), implicit.st_uid, implicit.st_gid) == (0o755, 0, 0)


@pytest.mark.needs_root
def test_directory_repeated_takes_the_last_metadata(dest: Path) -> None:
    extract([dir_("d", mode=0o700), reg("d/f", b"kept"), dir_("d", mode=0o751, mtime=42)], dest)
    st = os.stat(dest / "d")
    assert (stat.S_IMODE(st.st_mode), st.st_mtime) == (0o751, 42)
    assert (dest / "d/f").read_bytes() == b"kept"


@pytest.mark.needs_root
def test_hardlink_groups_share_an_inode(dest: Path) -> None:
    extract(
        [
            reg("a", b"shared", mode=0o640),
            link("b", "a"),
            link("/c", "./a"),
            dir_("sub"),
            link("sub/d", "/a"),
            sym("s", "a"),
            link("s2", "s"),
        ],
        dest,
    )
    inodes = {os.lstat(dest / name).st_ino for name in ("a", "b", "c", "sub/d")}
    assert len(inodes) == 1
    assert os.lstat(dest / "a").st_nlink == 4
    assert (dest / "sub/d").read_bytes() == b"shared"
    assert os.lstat(dest / "s2").st_ino == os.lstat(dest / "s").st_ino
    assert os.readlink(dest / "s2") == "a"


@pytest.mark.needs_root
def test_symlink_targets_are_verbatim(dest: Path) -> None:
    targets = ["/etc/passwd", "../../../../x", "relative/y", "/", "..", "dangling", "a//b/./"]
    extract([sym(f"s{i}", target) for i, target in enumerate(targets)], dest)
    assert [os.readlink(dest / f"s{i}") for i in range(len(targets))] == targets


@pytest.mark.needs_root
def test_device_nodes_and_fifos(dest: Path) -> None:
    extract(
        [
            node("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
            node("dev/loop9", tarfile.BLKTYPE, 0o660, devmajor=7, devminor=9),
            node("fifo", tarfile.FIFOTYPE, 0o600),
        ],
        dest,
    )
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and stat.S_IMODE(null.st_mode) == 0o666
    assert (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    loop = os.lstat(dest / "dev/loop9")
    assert stat.S_ISBLK(loop.st_mode)
    assert (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 9)
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)


@pytest.mark.needs_root
def test_pax_xattrs(dest: Path) -> None:
    extract(
        [
            dir_("d", pax_headers={"SCHILY.xattr.user.dir": "on a dir"}),
            reg("d/f", b"x", pax_headers={"SCHILY.xattr.user.test": "hello"}),
            reg("caps", b"x", mode=0o4755, uid=7, pax_headers={"SCHILY.xattr.trusted.t": "1"}),
            sym(
                "s",
                "d/f",
                pax_headers={"SCHILY.xattr.trusted.link": "L", "SCHILY.xattr.user.no": "x"},
            ),
        ],
        dest,
    )
    assert xattr.getxattr(str(dest / "d/f"), "user.test") == b"hello"
    assert xattr.getxattr(str(dest / "d"), "user.dir") == b"on a dir"
    assert xattr.getxattr(str(dest / "caps"), "trusted.t") == b"1"
    assert stat.S_IMODE(os.stat(dest / "caps").st_mode) == 0o4755
    link_attrs = xattr.listxattr(str(dest / "s"), symlink=True)
    assert "trusted.link" in link_attrs and "user.no" not in link_attrs
    assert "trusted.link" not in xattr.listxattr(str(dest / "d/f"))


@pytest.mark.needs_root
def test_later_member_replaces_earlier(dest: Path) -> None:
    extract(
        [
            reg("file", b"old"),
            reg("file", b"new", mode=0o600),
            reg("linked", b"first"),
            link("other", "linked"),
            reg("linked", b"second"),
            dir_("dir"),
            reg("dir/child"),
            reg("dir", b"now a file"),
            reg("becomes-dir", b"x"),
            dir_("becomes-dir"),
            sym("becomes-file", "/etc/passwd"),
            reg("becomes-file", b"plain"),
            reg("becomes-link", b"x"),
            sym("becomes-link", "file"),
        ],
        dest,
    )
    assert (dest / "file").read_bytes() == b"new"
    assert stat.S_IMODE(os.stat(dest / "file").st_mode) == 0o600
    assert (dest / "linked").read_bytes() == b"second"
    assert (dest / "other").read_bytes() == b"first"
    assert (dest / "dir").read_bytes() == b"now a file"
    assert (dest / "becomes-dir").is_dir()
    assert (dest / "becomes-file").read_bytes() == b"plain"
    assert os.readlink(dest / "becomes-link") == "file"


@pytest.mark.needs_root
def test_large_file_and_odd_names(dest: Path) -> None:
    big = os.urandom(3 * (1 << 20) + 123)
    name = "ünï/" + "n" * 200 + "/not-utf8-\udcff"
    extract([reg("big", big), reg("./a//b/./c", b"c"), reg(name, b"odd")], dest)
    assert (dest / "big").read_bytes() == big
    assert (dest / "a/b/c").read_bytes() == b"c"
    assert (dest / name).read_bytes() == b"odd"
    assert os.fsencode(dest / name).endswith(b"/not-utf8-\xff")


@pytest.mark.needs_root
def test_non_utf8_directory_names_work(dest: Path) -> None:
    # Linux names are bytes; tarfile hands them over as surrogate-escaped str.
    extract([reg("not-utf8-\udcff/f", b"x")], dest)
    assert (dest / "not-utf8-\udcff" / "f").read_bytes() == b"x"


@pytest.mark.parametrize("format", ["gnu", "posix"])
@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to make sparse files")
def test_gnu_sparse_files(tmp_path: Path, dest: Path, format: str) -> None:
    source = tmp_path / "src"
    source.mkdir()
    with open(source / "sparse", "wb") as file:
        file.write(b"head")
        file.seek(5 << 20)
        file.write(b"tail")
    archive = tmp_path / "sparse.tar"
    subprocess.run(
        ["tar", "--sparse", f"--format={format}", "-cf", archive, "-C", source, "sparse"],
        check=True,
    )
    with open_tarball(archive) as stream:
        extract_tar(stream, dest)
    assert (dest / "sparse").read_bytes() == (source / "sparse").read_bytes()


# --- hashing, compression and corrupt input ---------------------------------------------------


@pytest.mark.needs_root
def test_sha256_covers_the_whole_stream(dest: Path) -> None:
    data = tar_bytes([reg("f", b"x" * 1000)]) + bytes(3 * 512)
    assert extract_tar(io.BytesIO(data), dest) == hashlib.sha256(data).hexdigest()


def test_empty_archive(tmp_path: Path, dest: Path) -> None:
    data = bytes(1024)  # what an empty layer is
    path = tmp_path / "empty.tar"
    path.write_bytes(gzip.compress(data))
    with open_tarball(path) as stream:
        assert extract_tar(stream, dest) == hashlib.sha256(data).hexdigest()
    assert list(dest.iterdir()) == []


@pytest.mark.needs_root
@pytest.mark.parametrize("compress", [gzip.compress, lzma.compress, bz2.compress, lambda d: d])
def test_open_tarball_detects_compression_by_content(
    tmp_path: Path, dest: Path, compress: Callable[[bytes], bytes]
) -> None:
    data = tar_bytes([dir_("etc"), reg("etc/hostname", b"box\n")])
    path = tmp_path / "layer.tar.zst"  # the name is deliberately wrong
    path.write_bytes(compress(data))
    with open_tarball(path) as stream:
        assert extract_tar(stream, dest) == hashlib.sha256(data).hexdigest()
    assert (dest / "etc/hostname").read_bytes() == b"box\n"


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"\x28\xb5\x2f\xfd" + bytes(100), "zstd-compressed archives are not supported"),
        (b"", "empty file"),
        (os.urandom(4096), "not a tar archive"),
        (gzip.compress(b"plain text, not a tar" * 100), "not a tar archive"),
        (b"\x1f\x8b\x08\x00garbage", "ended before the end-of-stream marker"),
        (b"BZh9garbage", "Invalid data stream"),
    ],
    ids=["zstd", "empty", "random", "gzip-not-tar", "bad-gzip", "bad-bzip2"],
)
def test_open_tarball_refuses(tmp_path: Path, contents: bytes, message: str) -> None:
    path = tmp_path / "image.tar"
    path.write_bytes(contents)
    with pytest.raises(PydockError, match=message) as excinfo:
        open_tarball(path)
    assert str(excinfo.value).startswith(f"{path}: ")
    assert "\n" not in str(excinfo.value)


def test_open_tarball_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PydockError, match="No such file"):
        open_tarball(tmp_path / "nope.tar")


def test_truncated_compressed_layer(tmp_path: Path, dest: Path) -> None:
    compressed = gzip.compress(tar_bytes([reg("f", os.urandom(100_000))]))
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with open_tarball(path) as stream, pytest.raises(PydockError, match="'f': Compressed file"):
        extract_tar(stream, dest)


def _two_members() -> bytes:
    return tar_bytes([reg("a", b"a" * 700), reg("b", b"b" * 100)])


def _pax_header_chain() -> bytes:
    """Thousands of PAX extended headers in a row, which tarfile reads by recursion."""
    member = tar_bytes([reg("f", pax_headers={"comment": "x"})])
    return member[:1024] * 3000 + member


@pytest.mark.parametrize(
    "data",
    [
        _two_members()[:1000],  # inside a's contents
        _two_members()[:1536],  # after a, half-way into b's header block
        _two_members()[: 1536 + 512 + 512],  # after b, without the end-of-archive marker
        _two_members()[:1536] + os.urandom(512) + bytes(1024),  # b's header garbled
        _two_members() + b"trailing garbage",
        os.urandom(10240),
        b"",
        b"\0" * 100,
        _pax_header_chain(),
    ],
    ids=[
        "mid-data",
        "mid-header",
        "no-end-marker",
        "garbled-header",
        "trailing-garbage",
        "random",
        "empty",
        "short",
        "pax-header-chain",
    ],
)
def test_corrupt_archive_is_refused(dest: Path, data: bytes) -> None:
    with pytest.raises(PydockError) as excinfo:
        extract_tar(io.BytesIO(data), dest)
    assert "\n" not in str(excinfo.value)
