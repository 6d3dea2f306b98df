"""Image ids and manifest digests survive load, save and push: the blobs are kept as they came.

Before, saving regenerated every layer tar, and a layer made by another tool regenerated to
other bytes, so a loaded image saved again got a new id. Now the blobs an image came with
(a registry's, an archive's, the default image's own tar) are kept beside its extracted
layers and written again as they were.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from pydock.testing.cli import Pydock


def _run(*args: str | Path) -> str:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"{args}: {result.stderr}"
    return result.stdout


def _saved_docker_id(archive: Path, tmp_path: Path) -> str:
    out = tmp_path / "unpacked"
    out.mkdir()
    _run("tar", "-xf", archive, "-C", out)
    [entry] = json.loads((out / "manifest.json").read_text())
    config = (out / entry["Config"]).read_bytes()
    return f"sha256:{hashlib.sha256(config).hexdigest()}"


def _id(pydock: Pydock, reference: str) -> str:
    image_id: str = json.loads(pydock.ok("image", "inspect", reference))["Id"]
    return image_id


@pytest.mark.needs_root
def test_the_default_image_keeps_its_id_when_saved(pydock: Pydock, tmp_path: Path) -> None:
    pydock.ok("image", "save", "pydock/default", "-o", str(tmp_path / "d.tar"))
    assert _saved_docker_id(tmp_path / "d.tar", tmp_path) == _id(pydock, "pydock/default")


@pytest.mark.needs_root
def test_a_skopeo_layout_keeps_its_manifest_digest_and_id_through_load_and_save(
        pydock: Pydock, tmp_path: Path) -> None:
    # skopeo gzips the layers its own way: no tar or gzip pydock writes could match them.
    pydock.ok("image", "save", "pydock/default", "-o", str(tmp_path / "d.tar"))
    _run("skopeo", "copy", "-q", "--dest-compress", f"docker-archive:{tmp_path / 'd.tar'}",
         f"oci:{tmp_path / 'layout'}:1")
    index = json.loads((tmp_path / "layout" / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((tmp_path / "layout" / "blobs" / "sha256" /
                           digest.removeprefix("sha256:")).read_text())
    assert manifest["layers"][0]["mediaType"].endswith("+gzip")
    pydock.ok("image", "load", "-i", str(tmp_path / "layout"), "--name", "from/skopeo")
    image_id = _id(pydock, "from/skopeo:1")
    assert image_id == manifest["config"]["digest"]
    # Saved as an OCI layout: the same manifest, byte for byte.
    pydock.ok("image", "save", "from/skopeo:1", "--format", "oci", "-o", str(tmp_path / "o.tar"))
    out = tmp_path / "o"
    out.mkdir()
    _run("tar", "-xf", tmp_path / "o.tar", "-C", out)
    assert json.loads((out / "index.json").read_text())["manifests"][0]["digest"] == digest
    # Saved as a docker archive: the same config, so the same id.
    pydock.ok("image", "save", "from/skopeo:1", "-o", str(tmp_path / "s.tar"))
    assert _saved_docker_id(tmp_path / "s.tar", tmp_path) == image_id
    # Removing the image removes its kept blobs, and only those.
    before = set((pydock.root / "blobs" / "sha256").iterdir())
    pydock.ok("image", "rm", "from/skopeo:1")
    gone = before - set((pydock.root / "blobs" / "sha256").iterdir())
    assert {p.name for p in gone} >= {digest.removeprefix("sha256:"),
                                      manifest["layers"][0]["digest"].removeprefix("sha256:")}
    pydock.ok("image", "save", "pydock/default", "-o", str(tmp_path / "again.tar"))


@pytest.mark.needs_root
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_an_imported_tarball_keeps_its_id_when_saved(pydock: Pydock, tmp_path: Path,
                                                     compress: bool) -> None:
    from helpers import busybox_tarball

    tarball = busybox_tarball(tmp_path, compress=compress)
    image_id = pydock.ok("image", "import", str(tarball), "imported:1").strip()
    kept = json.loads((pydock.root / "images" / "manifests" /
                       image_id.removeprefix("sha256:")).read_text())
    assert len(kept) == 1  # the tarball itself is the layer's blob
    pydock.ok("image", "save", "imported:1", "-o", str(tmp_path / "s.tar"))
    assert _saved_docker_id(tmp_path / "s.tar", tmp_path) == image_id
