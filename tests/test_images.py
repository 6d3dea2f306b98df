"""Images: the embedded default image, rootfs tarball import, ls, inspect, rm."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import busybox_rootfs, busybox_tarball

from pydock.core.images.default import write_host_tools_layer
from pydock.core.images.store import ImageStore
from pydock.testing.cli import Pydock
from pydock.testing.tar import tar_bytes, tree


@pytest.mark.needs_root
def test_the_default_image_is_built_on_first_use_without_network(tmp_path: Path) -> None:
    cli = Pydock(tmp_path / "fresh")
    # `unshare -n` gives the CLI a network namespace with no route anywhere.
    result = subprocess.run(["unshare", "-n", "--", *cli_args(cli), "run", "--rm", "true"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    [image] = json.loads(cli.ok("image", "ls", "--format", "json"))
    assert (image["Repository"], image["Tag"]) == ("pydock/default", "latest")


def cli_args(cli: Pydock) -> list[str]:
    from pydock.testing.cli import PYDOCK

    return [PYDOCK, "--root", str(cli.root)]


def test_the_default_image_is_the_same_image_every_time(tmp_path: Path, pydock: Pydock) -> None:
    other = Pydock(tmp_path / "second")
    other.ok("run", "--rm", "true")
    first = json.loads(pydock.ok("image", "inspect", "pydock/default"))
    second = json.loads(other.ok("image", "inspect", "pydock/default"))
    assert first["Id"] == second["Id"]
    assert first["Config"]["Cmd"] == ["/bin/sh"]


def test_fallback_image_from_host_binaries_and_their_libraries_runs(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    # What pydock builds on a host without a static busybox.
    tar = tmp_path / "host-tools.tar"
    with open(tar, "wb") as f:
        write_host_tools_layer(f, ("sh", "ls", "cat", "hostname"), mtime=0)
    pydock.ok("image", "import", str(tar), "hosttools")
    out = pydock.ok("run", "--rm", "--image", "hosttools", "-name", "ht", "sh", "-c",
                    "ls /bin; hostname")
    assert out.split() == ["cat", "hostname", "ls", "sh", "ht"]


@pytest.mark.parametrize("compress", [bytes, gzip.compress, lzma.compress, bz2.compress],
                         ids=["plain", "gz", "xz", "bz2"])
def test_import_of_rootfs_tarballs(pydock: Pydock, tmp_path: Path,
                                   compress: Callable[[bytes], bytes]) -> None:
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc" / "os-release").write_text("NAME=tiny\n")
    # The name says nothing: compression is detected from the content.
    tar = tmp_path / "rootfs.tar.img"
    tar.write_bytes(compress(tar_bytes(tree(rootfs))))
    image_id = pydock.ok("image", "import", str(tar), "tiny:1.0").strip()
    assert image_id.startswith("sha256:")
    assert pydock.ok("run", "--rm", "--image", "tiny:1.0", "cat", "/etc/os-release") == \
        "NAME=tiny\n"
    assert pydock.ok("run", "--rm", "--image", image_id[7:19], "true") == ""


def test_layers_are_shared_between_images(pydock: Pydock, tmp_path: Path) -> None:
    tar = busybox_tarball(tmp_path)
    pydock.ok("image", "import", str(tar), "one")
    pydock.ok("image", "import", str(tar), "two")
    one = json.loads(pydock.ok("image", "inspect", "one"))
    two = json.loads(pydock.ok("image", "inspect", "two"))
    assert one["RootFS"]["Layers"] == two["RootFS"]["Layers"]
    assert len(list((pydock.root / "layers").iterdir())) == 2  # the default image's and this
    pydock.ok("image", "rm", "one")
    pydock.ok("run", "--rm", "--image", "two", "true")


def test_image_ls_lists_names_and_sizes(pydock: Pydock) -> None:
    lines = pydock.ok("image", "ls").splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "ID", "CREATED", "SIZE"]
    assert lines[1].split()[:2] == ["pydock/default", "latest"]


def test_image_rm_is_refused_while_a_container_uses_the_image(pydock: Pydock,
                                                              tmp_path: Path) -> None:
    tar = busybox_tarball(tmp_path)
    pydock.ok("image", "import", str(tar), "used")
    layers = set((pydock.root / "layers").iterdir())
    pydock.ok("run", "--image", "used", "--name", "user", "true")
    pydock.refused("image", "rm", "used", match="in use by container(s) user")
    pydock.ok("rm", "user")
    pydock.ok("image", "rm", "used")
    assert "used" not in pydock.ok("image", "ls")
    assert set((pydock.root / "layers").iterdir()) < layers


@pytest.mark.parametrize(("content", "message"), [
    (b"", "empty"),
    (b"this is not a tar archive at all" * 40, "not a tar archive"),
    (b"\x28\xb5\x2f\xfd" + b"\0" * 600, "zstd"),
])
def test_import_of_a_bad_file_is_one_line_125_and_leaves_nothing(
        pydock: Pydock, tmp_path: Path, content: bytes, message: str) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(content)
    before = sorted((pydock.root / "layers").iterdir())
    pydock.refused("image", "import", str(bad), "bad", match=message)
    assert sorted((pydock.root / "layers").iterdir()) == before
    assert "bad" not in pydock.ok("image", "ls")


def test_import_of_a_truncated_tarball_leaves_nothing(pydock: Pydock, tmp_path: Path) -> None:
    tar = busybox_tarball(tmp_path, "rootfs.tar.gz", compress=True)
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    before = sorted((pydock.root / "layers").iterdir())
    pydock.refused("image", "import", str(tar), "half")
    assert sorted((pydock.root / "layers").iterdir()) == before


@pytest.mark.parametrize("reference", ["UPPER", "a b", "x:", ":tag", "x:-bad", "../x", "a:b:c"])
def test_an_invalid_image_reference_is_refused_before_any_work(pydock: Pydock, tmp_path: Path,
                                                               reference: str) -> None:
    tar = busybox_tarball(tmp_path)
    before = sorted((pydock.root / "layers").iterdir())
    assert pydock.refused("image", "import", str(tar), reference).startswith(
        "invalid image reference")
    assert sorted((pydock.root / "layers").iterdir()) == before


def test_unknown_image_exits_125(pydock: Pydock) -> None:
    assert pydock.refused("run", "--image", "nothing:here", "true") == (
        "no such image: nothing:here")


def test_image_store_resolves_names_ids_and_prefixes(pydock: Pydock) -> None:
    store = ImageStore(pydock.root)
    image = store.resolve("pydock/default")
    assert store.resolve(image.id).id == image.id
    assert store.resolve(image.id[7:19]).id == image.id
    assert store.resolve("pydock/default:latest").names == ("pydock/default:latest",)
