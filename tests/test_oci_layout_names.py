"""OCI layouts name images as skopeo, containerd and umoci do: ``ref.name`` is the tag alone.

``image save --format oci`` writes the tag alone in ``org.opencontainers.image.ref.name`` and
the full name in ``io.containerd.image.name``; ``image load`` of a layout named by a tag alone
(skopeo's ``oci:DIR:TAG``) takes its repository from ``--name``.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pydock.testing.cli import Pydock


def _run(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def _names(pydock: Pydock) -> set[tuple[str, str]]:
    return {(r["Repository"], r["Tag"])
            for r in json.loads(pydock.ok("image", "ls", "--format", "json"))}


@pytest.mark.needs_root
def test_saved_layouts_name_the_tag_alone_and_umoci_finds_it(pydock: Pydock,
                                                             tmp_path: Path) -> None:
    pydock.ok("tag", "pydock/default", "localhost/pd:1")
    pydock.ok("image", "save", "localhost/pd:1", "--format", "oci", "-o", str(tmp_path / "o.tar"))
    layout = tmp_path / "layout"
    layout.mkdir()
    _run("tar", "-xf", tmp_path / "o.tar", "-C", layout)
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    assert entry["annotations"] == {"org.opencontainers.image.ref.name": "1",
                                    "io.containerd.image.name": "localhost/pd:1"}
    _run("umoci", "unpack", "--image", f"{layout}:1", tmp_path / "bundle")
    assert (tmp_path / "bundle" / "rootfs" / "bin" / "busybox").exists()
    # Back in, by its containerd name.
    pydock.ok("image", "rm", "localhost/pd:1")
    pydock.ok("image", "load", "-i", str(tmp_path / "o.tar"))
    assert ("localhost/pd", "1") in _names(pydock)


@pytest.mark.needs_root
def test_a_skopeo_layout_named_by_a_tag_takes_its_repository_from_name(
        pydock: Pydock, tmp_path: Path) -> None:
    pydock.ok("image", "save", "pydock/default", "-o", str(tmp_path / "d.tar"))
    _run("skopeo", "copy", "-q", f"docker-archive:{tmp_path / 'd.tar'}",
         f"oci:{tmp_path / 'layout'}:v2")
    loaded = pydock.ok("image", "load", "-i", str(tmp_path / "layout"))
    assert loaded.startswith("Loaded image: sha256:")  # a tag alone names no repository
    assert pydock.ok("image", "load", "-i", str(tmp_path / "layout"), "--name",
                     "team/app") == "Loaded image: team/app:v2\n"
    assert ("team/app", "v2") in _names(pydock)
    pydock.refused("image", "load", "-i", str(tmp_path / "layout"), "--name", "team/app:x",
                   match="a repository, without a tag or digest")
