"""Tests for pydock.core.layers.unpack: an honest layer comes out exactly as archived.

Modes (setuid, setgid, sticky), numeric owners, nanosecond times, directory metadata,
hardlinks, symlink targets, devices, xattrs, members that replace earlier ones, odd
names and GNU sparse files.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
import xattr
from helpers import extract

from pydock.core.layers.compression import open_tarball
from pydock.core.layers.unpack import extract_tar
from pydock.testing.tar import dir_, link, node, reg, sym

pytestmark = pytest.mark.quick


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
