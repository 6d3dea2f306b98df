"""commit and export, and the round trip: change, commit, save, load elsewhere, run."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest
from helpers import DRIVERS

from pydock.core.layers.unpack import extract_tar
from pydock.testing.cli import Pydock
from pydock.testing.manifest import diff_manifests, manifest

CHANGES = ("mkdir /added && echo new > /added/file && echo more >> /etc/passwd"
           " && rm /etc/group && rm -r /usr/sbin && mkdir /usr/sbin && echo only > /usr/sbin/only"
           " && chmod 4711 /added/file && ln /added/file /added/hardlink"
           " && ln -s ../etc/hosts /added/link")


def exported_tree(pydock: Pydock, name: str, dest: Path) -> Path:
    tar = dest.with_suffix(".tar")
    pydock.ok("export", name, "-o", str(tar))
    dest.mkdir()
    with open(tar, "rb") as f:
        extract_tar(f, dest)
    return dest


@pytest.mark.parametrize("driver", DRIVERS)
def test_commit_captures_exactly_the_changes(pydock: Pydock, tmp_path: Path,
                                             driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "src", "sh", "-c", CHANGES)
    image_id = pydock.ok("commit", "src", "committed:1").strip()
    assert image_id.startswith("sha256:")
    for runner in DRIVERS:
        pydock.ok("run", "--storage", runner, "--image", "committed:1", "--name", f"from-{runner}",
                  "true")
        assert pydock.ok("diff", f"from-{runner}") == ""
    original = manifest(exported_tree(pydock, "src", tmp_path / "original"))
    for runner in DRIVERS:
        again = manifest(exported_tree(pydock, f"from-{runner}", tmp_path / runner))
        assert diff_manifests(original, again) == [], runner


def test_commit_adds_one_layer_and_leaves_the_base_image_alone(pydock: Pydock) -> None:
    import json

    base = json.loads(pydock.ok("image", "inspect", "pydock/default"))
    pydock.ok("run", "--name", "src", "sh", "-c", "echo x > /x")
    pydock.ok("commit", "src", "plus-one")
    committed = json.loads(pydock.ok("image", "inspect", "plus-one"))
    assert committed["RootFS"]["Layers"][:-1] == base["RootFS"]["Layers"]
    assert len(committed["RootFS"]["Layers"]) == len(base["RootFS"]["Layers"]) + 1
    assert json.loads(pydock.ok("image", "inspect", "pydock/default")) == base
    assert pydock("run", "--rm", "cat", "/x").returncode != 0


@pytest.mark.parametrize("fmt", ["docker", "oci"])
def test_round_trip_through_save_and_load_into_a_fresh_root(pydock: Pydock, tmp_path: Path,
                                                            fmt: str) -> None:
    pydock.ok("run", "--name", "src", "sh", "-c", CHANGES)
    pydock.ok("commit", "src", "trip:1")
    pydock.ok("image", "save", "trip:1", "-o", str(tmp_path / "trip.tar"), "--format", fmt)
    fresh = Pydock(tmp_path / "fresh")
    fresh.ok("image", "load", "-i", str(tmp_path / "trip.tar"))
    for driver in DRIVERS:
        fresh.ok("run", "--storage", driver, "--image", "trip:1", "--name", driver, "true")
        original = manifest(exported_tree(pydock, "src", tmp_path / f"original-{driver}"))
        loaded = manifest(exported_tree(fresh, driver, tmp_path / f"loaded-{driver}"))
        assert diff_manifests(original, loaded) == [], driver
    fresh("rm", "-f", *DRIVERS)


def test_export_writes_the_flattened_root(pydock: Pydock, tmp_path: Path) -> None:
    pydock.ok("run", "--name", "src", "sh", "-c", CHANGES)
    tar = tmp_path / "root.tar"
    pydock.ok("export", "src", "-o", str(tar))
    with tarfile.open(tar) as t:
        names = set(t.getnames())
        hardlink = t.getmember("added/hardlink")
    assert {"added/file", "added/link", "usr/sbin/only", "bin/busybox"} <= names
    assert "etc/group" not in names and "usr/sbin/chroot" not in names
    assert not any(".wh." in name for name in names)
    assert hardlink.islnk() and hardlink.linkname == "added/file"


@pytest.mark.parametrize(("args", "message"), [
    (["commit", "ghost", "x"], "no such container: ghost"),
    (["commit", "src", "Bad Name"], "invalid image reference"),
    (["export", "ghost", "-o", "/tmp/never.tar"], "no such container: ghost"),
])
def test_commit_and_export_errors_are_one_line_125(pydock: Pydock, args: list[str],
                                                   message: str) -> None:
    pydock.ok("run", "--name", "src", "true")
    pydock.refused(*args, match=message)
