"""Tests for pydock.core.layers.flatten and .pack, with the kernel as the oracle.

Each chain of layers is built as OCI tars, extracted with extract_tar into overlay-format layer
directories, and then, for every prefix of the chain, flattened with apply_layer and mounted
read-only with overlay: the two trees must have equal manifests. The comparison includes file
mtimes (times=True): overlay shows each file's own times, and apply_layer keeps them. Directory
times are not in a manifest at all (see tree_manifest).
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pydock.core.errors import PydockError
from pydock.core.layers.flatten import apply_layer
from pydock.core.layers.format import OPAQUE_XATTR, is_whiteout
from pydock.core.layers.pack import write_layer_tar
from pydock.core.layers.treecopy import copy_tree
from pydock.core.layers.unpack import extract_tar
from pydock.testing.manifest import Entry as ManifestEntry
from pydock.testing.manifest import diff_manifests, manifest
from pydock.testing.tar import Member, dir_, link, node, reg, sym, tar_bytes

# Layers are made and applied with their owners, devices and trusted.* xattrs: as root.
pytestmark = [pytest.mark.quick, pytest.mark.needs_root]

NO_ID = 2**32 - 1


def user_xattrs(**values: str) -> dict[str, str]:
    return {f"SCHILY.xattr.user.{key}": value for key, value in values.items()}


def make_layer(members: list[Member], dest: Path) -> Path:
    dest.mkdir()
    extract_tar(io.BytesIO(tar_bytes(members)), dest)
    return dest


@contextmanager
def overlay(layers: list[Path], where: Path) -> Iterator[Path]:
    """A read-only overlay mount of ``layers`` (bottom first) at a new directory ``where``."""
    # Without an upper directory overlay wants at least two lower ones.
    bottom = where.with_name(where.name + "-empty")
    bottom.mkdir()
    where.mkdir()
    lowerdir = ":".join(str(layer) for layer in reversed([bottom, *layers]))
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"ro,lowerdir={lowerdir}",
                    str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def flatten(layers: list[Path], target: Path) -> Path:
    target.mkdir()
    for layer in layers:
        apply_layer(layer, target)
    return target


def assert_same(a: dict[str, ManifestEntry], b: dict[str, ManifestEntry]) -> None:
    assert a == b, "\n".join(diff_manifests(a, b))


def assert_plain(tree: dict[str, ManifestEntry]) -> None:
    """No overlay whiteout or opaque marker in a flattened tree."""
    for path, entry in tree.items():
        assert not (entry.type == "chr" and entry.rdev == (0, 0)), path
        assert not any(key.startswith("trusted.overlay.") for key in entry.xattrs), path
        assert ".wh." not in path, path


# --- a chain that exercises every rule, checked against overlay -------------------------------

BASE: list[Member] = [
    dir_("etc"),
    reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n"),
    reg("etc/hostname", b"base\n"),
    reg("etc/group", b"root:x:0:\n", mtime=1_500_000_000),
    dir_("bin"),
    reg("bin/sh", b"#!sh", mode=0o755),
    reg("usr/share/doc/a", b"a"),
    reg("usr/share/doc/b", b"b"),
    reg("usr/share/doc/sub/c", b"c"),
    reg("var/cache/apt/pkg", b"pkg"),
    reg("var/log", b"log"),
    reg("opt/app/old1", b"1"),
    reg("opt/app/sub/old2", b"2"),
    dir_("tmp", mode=0o1777),
    reg("suid", b"su", mode=0o4755),
    reg("sgid", b"sg", mode=0o2755, gid=50),
    dir_("sgid-dir", mode=0o2775, gid=50),
    reg("sgid-dir/f", b"in sgid dir", gid=50),
    reg("data/h1", b"shared"),
    link("data/h2", "data/h1"),
    link("data/h3", "data/h1"),
    node("dev/null", tarfile.CHRTYPE, 0o666, devmajor=1, devminor=3),
    node("dev/sda", tarfile.BLKTYPE, 0o660, devmajor=8, devminor=0, gid=6),
    node("run/fifo", tarfile.FIFOTYPE, 0o600),
    reg("xfile", b"x", pax_headers=user_xattrs(a="1", gone="bye")),
    dir_("xdir", pax_headers=user_xattrs(d="dir")),
    reg("xdir/f", b"f"),
    dir_("becomes-file"),
    reg("becomes-file/child", b"c"),
    reg("becomes-dir", b"file"),
    sym("lnk", "usr/share"),
    reg("chmodme", b"same"),
    reg("chownme", b"same", uid=1000, gid=1000),
    sym("abs", "/etc/passwd"),
    sym("dangling", "nowhere"),
    reg("deleteme/sub/x", b"x"),
    reg("deleteme/keep", b"k"),
    reg(".wh.ghost"),  # a whiteout in the bottom layer hides nothing
]

CHANGES: list[Member] = [
    dir_("etc", mode=0o750, uid=0, gid=0),
    reg("etc/hostname", b"modified\n"),
    reg("etc/new", b"new"),
    reg("etc/.wh.passwd"),
    reg("var/.wh.cache"),
    dir_("opt/app", mode=0o700),
    reg("opt/app/.wh..wh..opq"),
    reg("opt/app/new", b"new"),
    reg("becomes-file", b"now a file"),
    dir_("becomes-dir", mode=0o711),
    reg("becomes-dir/child", b"c"),
    dir_("lnk"),
    reg("lnk/inside", b"no longer a symlink"),
    reg("chmodme", b"same", mode=0o600),
    reg("chownme", b"same", uid=2000, gid=3000),
    dir_("usr", mode=0o700, uid=5, gid=6),
    reg("suid2", b"su", mode=0o4711),
    dir_("sticky", mode=0o1770),
    reg("sgid", b"sg", mode=0o2711, gid=60),
    reg("data/h1", b"new h1"),
    reg("data/n1", b"pair", mode=0o640),
    link("data/n2", "data/n1"),
    reg("xfile", b"x", pax_headers=user_xattrs(a="2", b="new")),
    dir_("xdir", pax_headers=user_xattrs(e="only")),
    reg("deleteme/sub/.wh.x"),
    node("dev/null", tarfile.FIFOTYPE, 0o644),
    reg(".wh.abs"),
]

MORE: list[Member] = [
    reg("etc/passwd", b"back again\n"),
    link("etc/hl", "etc/passwd"),
    reg(".wh.becomes-dir"),
    dir_("new-opaque"),
    reg("new-opaque/.wh..wh..opq"),
    reg("new-opaque/f", b"f"),
    reg(".wh.never-existed"),
    sym("usr/share/doc", "/tmp"),
    reg(".wh..wh..opq"),  # the kernel ignores an opaque layer root
    reg("var/cache/fresh", b"fresh"),
    reg("opt/.wh.app"),
    dir_("data"),
    reg("data/.wh..wh..opq"),
    reg("data/only", b"only"),
    reg(".wh.sgid-dir"),
    dir_("sgid-dir", mode=0o755),
    reg("sgid-dir/g", b"after its own whiteout: an opaque directory"),
    reg(".wh.deleteme"),
    reg("deleteme", b"a file now"),
    node("run/sock-like", tarfile.FIFOTYPE, 0o4640, uid=7, gid=8),
]

LAST: list[Member] = [
    reg(".wh.etc"),
    dir_("tmp", mode=0o1777, uid=0, gid=100),
    reg("tmp/.wh.nothing"),
    reg("lnk/.wh.inside"),
    reg("bin/.wh..wh..opq"),
    dir_("bin", mode=0o755),
    reg("bin/busybox", b"bb", mode=0o755),
    link("bin/sh", "bin/busybox"),
]


@pytest.fixture
def chain(tmp_path: Path) -> list[Path]:
    return [make_layer(members, tmp_path / f"layer{i}")
            for i, members in enumerate([BASE, CHANGES, MORE, LAST])]


def test_apply_matches_overlay_for_every_prefix(tmp_path: Path, chain: list[Path]) -> None:
    for depth in range(1, len(chain) + 1):
        layers = chain[:depth]
        flat = manifest(flatten(layers, tmp_path / f"flat{depth}"))
        with overlay(layers, tmp_path / f"mnt{depth}") as mounted:
            assert_same(flat, manifest(mounted))
        assert_plain(flat)


def test_apply_result_details(tmp_path: Path, chain: list[Path]) -> None:
    """A few of the rules spelled out, so that a failure says which one broke."""
    two = flatten(chain[:2], tmp_path / "two")
    assert (two / "etc/hostname").read_bytes() == b"modified\n"
    assert not os.path.lexists(two / "etc/passwd")
    assert os.listdir(two / "var") == ["log"]
    assert os.listdir(two / "opt/app") == ["new"]
    assert (two / "becomes-file").read_bytes() == b"now a file"
    assert os.listdir(two / "becomes-dir") == ["child"]
    assert (two / "lnk").is_dir() and not (two / "lnk").is_symlink()
    assert not os.path.lexists(two / "abs")
    assert stat.S_ISFIFO(os.lstat(two / "dev/null").st_mode)
    usr = os.lstat(two / "usr")  # metadata from the upper directory, entries from both
    assert (stat.S_IMODE(usr.st_mode), usr.st_uid, usr.st_gid) == (0o700, 5, 6)
    assert os.listdir(two / "usr/share/doc") != []
    assert sorted(os.listxattr(two / "xdir")) == ["user.e"]
    assert sorted(os.listxattr(two / "xfile")) == ["user.a", "user.b"]
    assert (two / "data/h1").read_bytes() == b"new h1"
    assert (two / "data/h2").read_bytes() == b"shared"
    assert os.lstat(two / "data/h2").st_ino == os.lstat(two / "data/h3").st_ino
    assert os.lstat(two / "data/n1").st_ino == os.lstat(two / "data/n2").st_ino
    assert os.listdir(two / "deleteme/sub") == []

    three = flatten(chain[:3], tmp_path / "three")
    assert (three / "etc/passwd").read_bytes() == b"back again\n"
    assert os.lstat(three / "etc/hl").st_ino == os.lstat(three / "etc/passwd").st_ino
    assert os.listdir(three / "opt") == []
    assert os.listdir(three / "data") == ["only"]
    assert os.listdir(three / "sgid-dir") == ["g"]
    assert os.listdir(three / "var/cache") == ["fresh"]
    assert (three / "deleteme").read_bytes() == b"a file now"
    assert not os.path.lexists(three / "becomes-dir")
    assert os.readlink(three / "usr/share/doc") == "/tmp"
    assert os.path.lexists(three / "etc")  # the opaque root of the third layer is ignored


def test_apply_onto_inheriting_directories(tmp_path: Path) -> None:
    """Entries copied into a setgid directory or one with a default ACL keep their own owner,
    mode and xattrs, as they show through overlay."""
    lower = make_layer([dir_("shared", mode=0o2777, gid=50), reg("shared/old", b"o", gid=50)],
                       tmp_path / "lower")
    upper = make_layer([reg("shared/new", b"n", mode=0o600, gid=0),
                        dir_("shared/sub", mode=0o700, gid=0),
                        node("shared/pipe", tarfile.FIFOTYPE, 0o600, gid=0)],
                       tmp_path / "upper")
    flat = tmp_path / "flat"
    flat.mkdir()
    apply_layer(lower, flat)
    # A default ACL (user::rwx, user:1000:r-x, group::rwx, mask::rwx, other::r-x), which the
    # kernel hands to every new entry as an access ACL, and to new directories as a default.
    acl = struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, uid)
        for tag, perm, uid in [(0x01, 7, NO_ID), (0x02, 5, 1000), (0x04, 7, NO_ID),
                               (0x10, 7, NO_ID), (0x20, 5, NO_ID)])
    os.setxattr(flat / "shared", "system.posix_acl_default", acl)
    apply_layer(upper, flat)
    os.removexattr(flat / "shared", "system.posix_acl_default")
    with overlay([lower, upper], tmp_path / "mnt") as mounted:
        assert_same(manifest(flat), manifest(mounted))
    for name in ("new", "sub", "pipe"):
        assert not [key for key in os.listxattr(flat / "shared" / name, follow_symlinks=False)
                    if key.startswith("system.posix_acl")], name


def test_apply_drops_overlay_xattrs_of_an_upper_dir(tmp_path: Path) -> None:
    """An overlay upper directory (what commit exports) carries overlay's own xattrs."""
    lower = make_layer([reg("d/f", b"lower"), reg("d/g", b"g")], tmp_path / "lower")
    upper = tmp_path / "upper"
    (upper / "d").mkdir(parents=True)
    (upper / "d/f").write_bytes(b"copied up")
    os.setxattr(upper / "d/f", "trusted.overlay.origin", b"\x00\xfb")
    os.setxattr(upper / "d", "trusted.overlay.impure", b"y")
    os.mknod(upper / "d/g", stat.S_IFCHR, 0)
    flat = flatten([lower, upper], tmp_path / "flat")
    tree = manifest(flat)
    assert_plain(tree)
    assert sorted(os.listdir(flat / "d")) == ["f"]
    assert (flat / "d/f").read_bytes() == b"copied up"


@pytest.mark.parametrize("key", ["trusted.overlay.redirect", "trusted.overlay.metacopy"])
def test_layers_that_depend_on_lower_layers_are_refused(tmp_path: Path, key: str) -> None:
    layer = tmp_path / "layer"
    (layer / "d").mkdir(parents=True)
    (layer / "d/f").write_bytes(b"")
    os.setxattr(layer / ("d" if key.endswith("redirect") else "d/f"), key, b"/elsewhere")
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(PydockError, match=key):
        apply_layer(layer, target)
    with pytest.raises(PydockError, match=key):
        write_layer_tar(io.BytesIO(), layer)


# --- apply_layer never leaves the target ------------------------------------------------------


def _snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    result: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [".", *dirnames, *filenames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None
            result[path] = (st.st_mode, st.st_uid, st.st_ino, st.st_nlink, st.st_mtime_ns, data)
    return result


def test_apply_never_writes_outside_target(tmp_path: Path) -> None:
    # The symlinks aim at a sentinel tree rather than at the host's own /etc, so that a
    # regression damages only the sentinel; "/" itself is reached through "root -> /".
    sentinel = tmp_path / "sentinel"
    (sentinel / "etc").mkdir(parents=True)
    (sentinel / "etc/passwd").write_bytes(b"sentinel passwd")
    (sentinel / "lib").mkdir()
    (sentinel / "lib/x").write_bytes(b"sentinel x")
    (sentinel / "victim").mkdir()
    (sentinel / "victim/file").write_bytes(b"keep me")
    out = str(sentinel).lstrip("/")
    up = "../" * 20
    lower = make_layer(
        [
            sym("etc", f"/{out}/etc"),
            sym("lib", f"{up}{out}/lib"),
            sym("root", "/"),
            sym("gone", f"/{out}/victim"),
            sym("opaque", f"{up}{out}/victim"),
            sym("file", f"/{out}/victim/file"),
            sym("dir", f"/{out}/victim"),
            dir_("real"),
            sym("real/up", up),
        ],
        tmp_path / "lower",
    )
    upper = make_layer(
        [
            reg("etc/passwd", b"pwned"),
            reg("lib/x", b"pwned"),
            reg(f"root/{out}/victim/new", b"pwned"),
            reg(".wh.gone"),
            dir_("opaque"),
            reg("opaque/.wh..wh..opq"),
            reg("file", b"pwned"),
            reg("dir/.wh.file"),
            reg(f"real/up/{out}/victim/.wh.file"),
        ],
        tmp_path / "upper",
    )
    last = make_layer([reg(".wh.etc"), reg(".wh.root"), reg(".wh.real")], tmp_path / "last")
    before = _snapshot(sentinel)
    flat = flatten([lower, upper], tmp_path / "flat")
    assert _snapshot(sentinel) == before
    # Each directory of the upper layer replaced the symlink in its place.
    assert (flat / "etc/passwd").read_bytes() == b"pwned"
    assert (flat / "lib/x").read_bytes() == b"pwned"
    assert (flat / f"root/{out}/victim/new").read_bytes() == b"pwned"
    assert not os.path.lexists(flat / "gone")
    assert os.listdir(flat / "opaque") == []
    assert (flat / "file").read_bytes() == b"pwned"
    assert os.listdir(flat / "dir") == []
    assert not os.path.lexists(flat / f"real/up/{out}/victim/file")
    apply_layer(last, flat)
    assert _snapshot(sentinel) == before
    assert sorted(os.listdir(flat)) == ["dir", "file", "lib", "opaque"]


def test_whiteout_with_nothing_below_it(tmp_path: Path) -> None:
    """A whiteout in a directory that merges with nothing hides nothing, and apply_layer drops
    it. Overlay's lookup agrees, though its readdir still lists such a whiteout: the kernel
    filters whiteouts only while merging directories."""
    lower = make_layer([reg("x", b"x")], tmp_path / "lower")
    upper = make_layer([reg("d/.wh.w")], tmp_path / "upper")
    flat = flatten([lower, upper], tmp_path / "flat")
    assert os.listdir(flat / "d") == []
    with overlay([lower, upper], tmp_path / "mnt") as mounted:
        assert not os.path.lexists(mounted / "d/w")


# --- write_layer_tar --------------------------------------------------------------------------


def _write(layer: Path) -> tuple[bytes, str]:
    out = io.BytesIO()
    digest = write_layer_tar(out, layer)
    return out.getvalue(), digest


@pytest.mark.parametrize("index", range(4))
def test_write_layer_tar_round_trip(tmp_path: Path, chain: list[Path], index: int) -> None:
    layer = chain[index]
    data, digest = _write(layer)
    assert digest == hashlib.sha256(data).hexdigest()
    again = tmp_path / "again"
    again.mkdir()
    assert extract_tar(io.BytesIO(data), again) == digest
    assert_same(manifest(layer), manifest(again))
    assert _write(layer) == (data, digest)
    copy = tmp_path / "copy"
    copy_tree(layer, copy)  # other inodes, other atimes: the same tree
    assert _write(copy) == (data, digest)


def test_write_layer_tar_entries(chain: list[Path]) -> None:
    with tarfile.open(fileobj=io.BytesIO(_write(chain[2])[0])) as tar:
        members = tar.getmembers()
    names = [member.name for member in members]
    by_name = {member.name: member for member in members}
    assert names[0] == ".wh..wh..opq"  # the root's marker comes first
    for marker in ["data/.wh..wh..opq", "new-opaque/.wh..wh..opq"]:
        directory = marker.rpartition("/")[0]
        assert names.index(marker) == names.index(directory) + 1
    for whiteout in [".wh.becomes-dir", ".wh.never-existed", "opt/.wh.app"]:
        member = by_name[whiteout]
        assert member.isreg() and member.size == 0 and member.mode == 0
        assert (member.uid, member.gid) == (0, 0)
    assert by_name["deleteme"].isreg() and ".wh.deleteme" not in by_name  # replaced in-layer
    assert "sgid-dir/.wh..wh..opq" in by_name  # the directory after its own whiteout
    # The first path written of an inode is its file, whichever name came first in the tar.
    assert by_name["etc/hl"].isreg() and by_name["etc/hl"].size == len(b"back again\n")
    assert by_name["etc/passwd"].islnk() and by_name["etc/passwd"].linkname == "etc/hl"
    assert by_name["usr/share/doc"].issym()
    for member in members:
        assert member.uname == member.gname == ""
        assert set(member.pax_headers) <= {"path", "linkpath"}, member.name
        assert not member.name.startswith(("/", "./")), member.name
    # Depth first, each directory's entries sorted, each directory before what it holds.
    assert "" not in names and "." not in names
    for index, name in enumerate(names):
        parent = name.rpartition("/")[0]
        if parent:
            assert names.index(parent) < index, name


def test_write_layer_tar_types_owners_and_xattrs(tmp_path: Path, chain: list[Path]) -> None:
    layer = chain[0]
    os.mkfifo(layer / "run/fifo2")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(layer / "run/socket"))
    with tarfile.open(fileobj=io.BytesIO(_write(layer)[0])) as tar:
        by_name = {member.name: member for member in tar.getmembers()}
    assert "run/socket" not in by_name
    assert by_name["run/fifo2"].isfifo()
    null = by_name["dev/null"]
    assert null.ischr() and (null.devmajor, null.devminor) == (1, 3) and null.mode == 0o666
    sda = by_name["dev/sda"]
    assert sda.isblk() and (sda.devmajor, sda.devminor, sda.gid) == (8, 0, 6)
    assert by_name["tmp"].isdir() and by_name["tmp"].mode == 0o1777
    assert by_name["suid"].mode == 0o4755 and by_name["sgid"].mode == 0o2755
    assert by_name["sgid"].gid == 50
    assert by_name["etc/group"].mtime == 1_500_000_000
    assert by_name["xfile"].pax_headers == {"SCHILY.xattr.user.a": "1",
                                            "SCHILY.xattr.user.gone": "bye"}
    assert by_name["xdir"].pax_headers == {"SCHILY.xattr.user.d": "dir"}
    assert by_name["abs"].linkname == "/etc/passwd"
    assert [by_name[n].linkname for n in ("data/h2", "data/h3")] == ["data/h1"] * 2
    assert ".wh.ghost" in by_name


def test_write_layer_tar_skips_trusted_xattrs_and_keeps_binary_ones(tmp_path: Path) -> None:
    layer = tmp_path / "layer"
    layer.mkdir()
    (layer / "f").write_bytes(b"f")
    (layer / "d").mkdir()
    os.setxattr(layer / "f", "trusted.secret", b"no")
    os.setxattr(layer / "f", "user.binary", b"\xff\x00\x80")
    os.setxattr(layer / "d", OPAQUE_XATTR, b"y")
    os.setxattr(layer / "d", "trusted.overlay.impure", b"y")
    os.mknod(layer / "wo", stat.S_IFCHR, 0)
    assert is_whiteout(os.lstat(layer / "wo"))
    assert not is_whiteout(os.lstat(layer / "f"))
    data, _ = _write(layer)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == [".wh.wo", "d", "d/.wh..wh..opq", "f"]
    again = tmp_path / "again"
    again.mkdir()
    extract_tar(io.BytesIO(data), again)
    assert os.getxattr(again / "f", "user.binary") == b"\xff\x00\x80"
    assert "trusted.secret" not in os.listxattr(again / "f")
    assert os.listxattr(again / "d") == [OPAQUE_XATTR]
    assert is_whiteout(os.lstat(again / "wo"))
