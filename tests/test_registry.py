"""pull, push and run --pull against a real registry: Debian's docker-registry on 127.0.0.1.

Images go in with skopeo and come out with pydock, and the other way round; the manifest
digest and the image id (the config's digest) must survive every trip, as they do between
docker, podman and skopeo.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Layer, make_layers
from registry_images import (
    multi_arch,
    remote_config_digest,
    remote_digest,
    skopeo,
    skopeo_push,
    three_layers,
    zstd_layout,
)
from test_image_transfer import podman, run  # noqa: F401 (podman: a fixture, storage of its own)

from pydock.testing.cli import Pydock
from pydock.testing.registries import RunningRegistry, have_registry, registry

pytestmark = pytest.mark.skipif(not have_registry(),
                                reason="docker-registry (Debian package) is not installed")


@pytest.fixture(scope="module")
def layers3(tmp_path_factory: pytest.TempPathFactory) -> list[Layer]:
    # Mixed: a gzip'd base, a plain middle layer, a gzip'd top.
    return make_layers(tmp_path_factory.mktemp("layers"), (True, False, True))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


@pytest.fixture(scope="module")
def three(plain: RunningRegistry, layers3: list[Layer],
          tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(reference, manifest digest, image id) of the three-layer image, pushed by skopeo."""
    layout = tmp_path_factory.mktemp("three")
    image_id = three_layers(layout, layers3)
    reference = f"{plain.host}/test/three:1"
    return reference, skopeo_push(layout, reference), image_id


def _ids(pydock: Pydock) -> dict[str, str]:
    return {f"{r['Repository']}:{r['Tag']}": r["ID"]
            for r in json.loads(pydock.ok("image", "ls", "--format", "json"))}


def test_pull_keeps_the_manifest_digest_and_the_image_id(
        pydock: Pydock, three: tuple[str, str, str]) -> None:
    reference, digest, image_id = three
    out = pydock.ok("pull", reference)
    assert out.splitlines() == [f"Digest: {digest}",
                                f"Status: Downloaded newer image for {reference}", image_id]
    details = json.loads(pydock.ok("image", "inspect", reference))
    assert details["Id"] == image_id
    repository = reference.rpartition(":")[0]
    table = pydock.ok("image", "ls", "--digests").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "DIGEST", "ID", "CREATED", "SIZE"]
    assert [repository, "1", digest, image_id[7:19]] in [row.split()[:4] for row in table]
    assert details["RepoDigests"] == [f"{repository}@{digest}"]
    result = pydock("run", "--rm", "--image", reference, "cat", "/etc/greeting", "/top.txt")
    assert (result.returncode, result.stdout) == (0, "hello from the middle\ntop layer\n")
    # The same image again: nothing is downloaded, and it says so.
    again = pydock("pull", reference)
    assert again.stdout.splitlines()[1] == f"Status: Image is up to date for {reference}"
    assert "0.0 MB" in again.stderr and "3 already there" in again.stderr
    # By digest: the same image, listed with its repository and no tag.
    assert pydock.ok("pull", "-q", f"{repository}@{digest}").strip() == image_id
    assert json.loads(pydock.ok("image", "inspect", f"{repository}@{digest}"))["Id"] == image_id
    # The blobs stay as they came; removing the image removes them.
    blobs = pydock.root / "blobs" / "sha256"
    assert f"sha256:{remote_config_digest(reference).removeprefix('sha256:')}" == image_id
    default = set(os.listdir(blobs))
    pydock.ok("image", "rm", "pydock/default")  # its own kept blobs aside
    assert len(os.listdir(blobs)) == 5  # manifest, config, three layers
    layers = len(os.listdir(pydock.root / "layers"))
    pydock.ok("image", "rm", reference)
    assert os.listdir(blobs) == []
    assert len(default) == 3 + 5
    assert len(os.listdir(pydock.root / "layers")) == layers - 3


def test_push_of_a_pulled_image_keeps_its_digest_and_skopeo_reads_it_back(
        pydock: Pydock, three: tuple[str, str, str], tmp_path: Path) -> None:
    reference, digest, image_id = three
    pydock.ok("pull", reference)
    host = reference.partition("/")[0]
    target = f"{host}/elsewhere/three:2"
    pydock.ok("tag", reference, target)
    result = pydock("push", target)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"2: digest: {digest} size: {len(_raw(reference))}\n"
    assert "3 already there" in result.stderr or "already there" in result.stderr  # mounted
    assert remote_digest(target) == digest
    # image save of the pulled image: the same config in the archive, so the same id.
    pydock.ok("image", "save", target, "-o", str(tmp_path / "saved.tar"))
    subprocess.run(["tar", "-xf", str(tmp_path / "saved.tar"), "-C", str(tmp_path)],
                   check=True)
    [entry] = json.loads((tmp_path / "manifest.json").read_text())
    assert entry["Config"] == f"{image_id.removeprefix('sha256:')}.json"
    # skopeo copies it out: the same config, so the same image id.
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{target}",
           f"oci:{tmp_path / 'out'}:2")
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    manifest = json.loads((tmp_path / "out" / "blobs" / "sha256" /
                           index["manifests"][0]["digest"].removeprefix("sha256:")).read_text())
    assert manifest["config"]["digest"] == image_id


def _raw(reference: str) -> bytes:
    return subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                           f"docker://{reference}"], capture_output=True, check=True).stdout


def test_a_local_image_pushed_in_chunks_comes_back_the_same(
        pydock: Pydock, plain: RunningRegistry, tmp_path: Path) -> None:
    target = f"{plain.host}/local/default:1"
    pydock.ok("tag", "pydock/default", target)
    pushed = pydock("push", "--chunk-size", "65536", target)
    assert pushed.returncode == 0, pushed.stderr
    digest = pushed.stdout.split("digest: ")[1].split()[0]
    assert remote_digest(target) == digest
    pushed_id = remote_config_digest(target)
    # The default image's own tar was kept as its blob: the registry has the same image.
    assert pushed_id == json.loads(pydock.ok("image", "inspect", target))["Id"]
    # Pushed again: every blob is already there, and the manifest is the same.
    again = pydock("image", "push", target)
    assert again.returncode == 0 and digest in again.stdout and "2 already there" in again.stderr
    # Into an empty store (all of this root's images gone): the same image id.
    pydock.ok("image", "rm", target)
    pydock.ok("image", "rm", "pydock/default")
    assert pydock.ok("pull", "-q", target).strip() == pushed_id
    result = pydock("run", "--rm", "--image", target, "echo", "round trip")
    assert (result.returncode, result.stdout) == (0, "round trip\n")


def test_zstd_layers_are_pulled(pydock: Pydock, plain: RunningRegistry, layers3: list[Layer],
                                tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    image_id = zstd_layout(layout, layers3)
    reference = f"{plain.host}/test/zstd:1"
    skopeo_push(layout, reference)
    manifest = json.loads(_raw(reference))
    assert {layer["mediaType"] for layer in manifest["layers"]} == {
        "application/vnd.oci.image.layer.v1.tar+zstd"}
    assert pydock.ok("pull", "-q", reference).strip() == image_id
    result = pydock("run", "--rm", "--image", reference, "cat", "/etc/greeting")
    assert (result.returncode, result.stdout) == (0, "hello from the middle\n")


def test_a_multi_arch_index_gives_the_platform_asked_for(
        pydock: Pydock, plain: RunningRegistry, layers3: list[Layer], tmp_path: Path) -> None:
    ids = multi_arch(tmp_path / "multi", layers3)
    reference = f"{plain.host}/test/multi:1"
    skopeo("copy", "-q", "--all", "--dest-tls-verify=false", f"oci:{tmp_path / 'multi'}:1",
           f"docker://{reference}")
    index_digest = remote_digest(reference)
    out = pydock.ok("pull", reference).splitlines()
    assert out[0] == f"Digest: {index_digest}" and out[2] == ids["amd64"]
    arm = pydock.ok("pull", "-q", "--platform", "linux/arm64", reference).strip()
    assert arm == ids["arm64"]
    details = json.loads(pydock.ok("image", "inspect", reference))
    assert (details["Id"], details["Architecture"]) == (ids["arm64"], "arm64")
    from helpers import refused_unchanged

    refused_unchanged(pydock, ["pull", "--platform", "linux/s390x", reference],
                      "no image for linux/s390x (it has linux/amd64, linux/arm64)")


def test_run_pulls_a_missing_image_unless_told_not_to(
        pydock: Pydock, three: tuple[str, str, str]) -> None:
    reference, _digest, image_id = three
    missing = {"PYDOCK_PULL_POLICY": "missing"}  # the default, which the test CLI changes
    pydock.refused("run", "--rm", "--pull", "never", "--image", reference, "true",
                   match=f"no such image: {reference}", env=missing)
    result = pydock("run", "--rm", "--image", reference, "cat", "/top.txt", env=missing)
    assert (result.returncode, result.stdout) == (0, "top layer\n"), result.stderr
    assert "Status: Downloaded newer image" in result.stderr
    assert json.loads(pydock.ok("image", "inspect", reference))["Id"] == image_id
    # --pull always asks the registry again, and finds it up to date.
    result = pydock("run", "--rm", "--pull", "always", "--image", reference, "true")
    assert result.returncode == 0 and "Image is up to date" in result.stderr
    pydock.refused("run", "--rm", "--pull", "sometimes", "true", match="'sometimes'")
    # A registry that is not there: one line, nothing made.
    pydock.refused("run", "--rm", "--image", "127.0.0.1:1/nothing:1", "true", env=missing,
                   match="no such image: 127.0.0.1:1/nothing:1, and pulling it failed: "
                         "cannot reach registry 127.0.0.1:1")
    assert pydock.container_names() == []


def test_pydock_pushes_and_podman_pulls_the_same_image_and_tree(
        pydock: Pydock, three: tuple[str, str, str], podman: list[str]) -> None:  # noqa: F811 (the fixture)
    reference, _digest, image_id = three
    pydock.ok("pull", reference)
    host = reference.partition("/")[0]
    target = f"{host}/forpodman/three:1"
    pydock.ok("tag", reference, target)
    pydock.ok("push", target)
    run(*podman, "pull", "-q", "--tls-verify=false", target)
    assert run(*podman, "image", "inspect", "--format", "{{.Id}}", target).strip() == \
        image_id.removeprefix("sha256:")
    mounted = Path(run(*podman, "image", "mount", target).strip())
    try:
        assert (mounted / "top.txt").read_text() == "top layer\n"
        assert (mounted / "etc" / "greeting").read_text() == "hello from the middle\n"
        assert (mounted / "bin" / "sh").readlink() == Path("busybox")
    finally:
        run(*podman, "image", "unmount", target)
    # And a local image (the default one, its tar kept as its blob) the same way.
    local = f"{host}/forpodman/default:1"
    pydock.ok("tag", "pydock/default", local)
    pydock.ok("push", local)
    run(*podman, "pull", "-q", "--tls-verify=false", local)
    assert run(*podman, "image", "inspect", "--format", "{{.Id}}", local).strip() == json.loads(
        pydock.ok("image", "inspect", local))["Id"].removeprefix("sha256:")


def test_pull_save_load_push_keeps_the_manifest_digest(
        pydock: Pydock, three: tuple[str, str, str], tmp_path: Path) -> None:
    reference, digest, image_id = three
    pydock.ok("pull", reference)
    pydock.ok("image", "save", reference, "--format", "oci", "-o", str(tmp_path / "o.tar"))
    pydock.ok("image", "rm", reference)
    assert not any((pydock.root / "blobs" / "sha256").glob(digest.removeprefix("sha256:")))
    pydock.ok("image", "load", "-i", str(tmp_path / "o.tar"))
    assert json.loads(pydock.ok("image", "inspect", reference))["Id"] == image_id
    target = f"{reference.partition('/')[0]}/roundtrip/three:1"
    pydock.ok("tag", reference, target)
    assert pydock.ok("push", target).split("digest: ")[1].split()[0] == digest
    assert remote_digest(target) == digest
