"""Tests for pydock.core.layers.unpack: OCI whiteouts become overlayfs's.

A ``.wh.NAME`` member becomes a 0/0 character device, ``.wh..wh..opq`` the
trusted.overlay.opaque xattr on its directory; malformed whiteouts and overlay metadata
smuggled in as xattrs are refused by name, and other character devices are kept.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest
import xattr
from helpers import extract

from pydock.core.errors import PydockError
from pydock.testing.tar import Member, dir_, link, node, reg, sym

pytestmark = pytest.mark.quick


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
