"""Bad registries and bad blobs: one line, exit 125, and the store as it was.

A registry served from memory by the test (:class:`pydock.testing.registries.FakeRegistry`)
misbehaves on purpose: missing tags, 429s, redirect loops, blobs that do not match their
digests or stop half-way, a manifest too large to be one. What a pull refuses leaves the
image store (images/, layers/) as it was and no scratch file behind; blobs that were verified
before the refusal stay, so that the next pull does not fetch them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from helpers import Layer, make_config, make_layers

from pydock.testing.cli import Pydock
from pydock.testing.manifest import manifest
from pydock.testing.registries import FakeRegistry, free_port

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPO = "test/img"


@pytest.fixture(scope="module")
def layers3(tmp_path_factory: pytest.TempPathFactory) -> list[Layer]:
    return make_layers(tmp_path_factory.mktemp("layers"), (True, True, False))


def _descriptor(data: bytes, media_type: str) -> dict[str, object]:
    return {"mediaType": media_type, "digest": f"sha256:{hashlib.sha256(data).hexdigest()}",
            "size": len(data)}


@pytest.fixture
def fake(layers3: list[Layer]) -> Iterator[FakeRegistry]:
    config = make_config(layers3)
    blobs = {f"sha256:{hashlib.sha256(b).hexdigest()}": b
             for b in [config, *(layer.blob for layer in layers3)]}
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": _descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [_descriptor(layer.blob, "application/vnd.oci.image.layer.v1.tar" + (
            "+gzip" if layer.blob != layer.tar else "")) for layer in layers3],
    }).encode()
    with FakeRegistry() as registry:
        registry.add_image(REPO, "1", body, OCI_MANIFEST, blobs)
        yield registry


def _blob_path(fake: FakeRegistry, layer: Layer) -> str:
    return f"/v2/{REPO}/blobs/{layer.digest}"


def _store(root: Path) -> dict[str, object]:
    """What a refused pull must leave as it was: images/ and layers/."""
    return {k: v for k, v in manifest(root).items() if k.split("/")[0] in ("images", "layers")}


def _refused(pydock: Pydock, args: list[str], message: str) -> str:
    before = _store(pydock.root)
    refusal = pydock.refused(*args, match=message)
    assert _store(pydock.root) == before
    blobs = pydock.root / "blobs"
    assert not blobs.exists() or [n for n in os.listdir(blobs) if n != "sha256"] == []
    return refusal


def test_a_pull_from_the_fake_registry_works(pydock: Pydock, fake: FakeRegistry) -> None:
    pydock.ok("pull", f"{fake.host}/{REPO}:1")
    result = pydock("run", "--rm", "--image", f"{fake.host}/{REPO}:1", "cat", "/top.txt")
    assert (result.returncode, result.stdout) == (0, "top layer\n")


def test_a_registry_that_is_not_there(pydock: Pydock) -> None:
    _refused(pydock, ["pull", f"127.0.0.1:{free_port()}/x:1"], "cannot reach registry")


def test_a_missing_repository_or_tag(pydock: Pydock, fake: FakeRegistry) -> None:
    _refused(pydock, ["pull", f"{fake.host}/nothing/here:1"], "not found (MANIFEST_UNKNOWN")
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:2"], f"{REPO}:2: not found")


def test_too_many_requests(pydock: Pydock, fake: FakeRegistry) -> None:
    path = f"/v2/{REPO}/manifests/1"
    fake.misbehave[path] = lambda h: FakeRegistry.reply(h, 429, b"", {"Retry-After": "100"})
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"], "too many requests (HTTP 429): retry "
             "after 100 s")
    # Once, with a short wait: retried, and pulled.
    def once(handler: BaseHTTPRequestHandler) -> None:
        del fake.misbehave[path]
        FakeRegistry.reply(handler, 429, b"", {"Retry-After": "1"})

    fake.misbehave[path] = once
    pydock.ok("pull", f"{fake.host}/{REPO}:1")
    assert fake.hits[path] == 3


def test_a_redirect_loop(pydock: Pydock, fake: FakeRegistry, layers3: list[Layer]) -> None:
    path = _blob_path(fake, layers3[1])
    fake.misbehave[path] = lambda h: FakeRegistry.reply(h, 307, b"", {"Location": path})
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"], "(a redirect loop)")


def test_a_blob_that_does_not_match_its_digest(pydock: Pydock, fake: FakeRegistry,
                                               layers3: list[Layer]) -> None:
    bad = bytearray(layers3[2].blob)
    bad[700] ^= 1  # same size, one bit off

    def late(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(1)  # after the others: a failure stops the downloads still running
        FakeRegistry.reply(handler, 200, bytes(bad))

    fake.misbehave[_blob_path(fake, layers3[2])] = late
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"],
             f"blob {layers3[2].digest}: content does not match its digest")
    # The verified blobs stay; the next pull, from a mended registry, fetches only the
    # missing one.
    kept = set(os.listdir(pydock.root / "blobs" / "sha256"))
    assert layers3[0].digest.removeprefix("sha256:") in kept
    assert layers3[2].digest.removeprefix("sha256:") not in kept
    del fake.misbehave[_blob_path(fake, layers3[2])]
    pydock.ok("pull", f"{fake.host}/{REPO}:1")
    assert fake.hits[_blob_path(fake, layers3[0])] == 1
    assert fake.hits[_blob_path(fake, layers3[2])] == 2


def test_a_truncated_blob(pydock: Pydock, fake: FakeRegistry, layers3: list[Layer]) -> None:
    blob = layers3[0].blob

    def truncated(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(blob)))
        handler.end_headers()
        handler.wfile.write(blob[: len(blob) // 2])
        handler.wfile.flush()
        handler.close_connection = True

    fake.misbehave[_blob_path(fake, layers3[0])] = truncated
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"], "connection broken")
    # Short, and said to be short: the size does not match the descriptor's.
    fake.misbehave[_blob_path(fake, layers3[0])] = lambda h: FakeRegistry.reply(
        h, 200, blob[:-10])
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"], "where its descriptor says")


def test_a_manifest_over_4_mib(pydock: Pydock, fake: FakeRegistry) -> None:
    huge = json.dumps({"schemaVersion": 2, "pad": "x" * (4 << 20)}).encode()
    fake.add_image(REPO, "huge", huge, OCI_MANIFEST, {})
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:huge"], "more than the 4194304 a manifest")
    # Without a Content-Length: read up to the limit, and no further.
    fake.misbehave[f"/v2/{REPO}/manifests/chunked"] = _chunked(huge)
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:chunked"],
             "more than the 4194304 bytes a manifest may have")


def _chunked(body: bytes):  # type: ignore[no-untyped-def]
    def serve(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(body), 1 << 16):
            part = body[start:start + (1 << 16)]
            handler.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")

    return serve


def test_a_manifest_that_is_not_the_digest_asked_for(pydock: Pydock, fake: FakeRegistry) -> None:
    other = "sha256:" + "1" * 64
    body, media_type = fake.manifests[f"{REPO}:1"]
    fake.manifests[f"{REPO}:{other}"] = (body, media_type)
    _refused(pydock, ["pull", f"{fake.host}/{REPO}@{other}"],
             f"content does not match its digest {other}")


def test_a_pull_killed_half_way_leaves_scratch_that_prune_sweeps(
        pydock: Pydock, fake: FakeRegistry) -> None:
    before = _store(pydock.root)
    result = pydock("pull", f"{fake.host}/{REPO}:1", env={
        "PYDOCK_FAILPOINT": "pull.blob-verified"})
    assert result.returncode == -signal.SIGKILL
    assert _store(pydock.root) == before
    pydock.ok("prune")
    assert [n for n in os.listdir(pydock.root / "blobs") if n != "sha256"] == []
    pydock.ok("pull", f"{fake.host}/{REPO}:1")


def test_ctrl_c_during_a_download(pydock: Pydock, fake: FakeRegistry,
                                  layers3: list[Layer]) -> None:
    blob = layers3[0].blob

    def slow(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(len(blob)))
        handler.end_headers()
        handler.wfile.write(blob[:1000])
        handler.wfile.flush()
        time.sleep(2)
        handler.wfile.write(blob[1000:])

    fake.misbehave[_blob_path(fake, layers3[0])] = slow
    before = _store(pydock.root)
    process = subprocess.Popen([*pydock_command(pydock), "pull", f"{fake.host}/{REPO}:1"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=pydock.env)
    deadline = time.monotonic() + 10
    while fake.hits.get(_blob_path(fake, layers3[0]), 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=30)
    # click's Abort for a Ctrl-C, as for every command: one line after the blank one.
    assert (process.returncode, err.strip()) == (130, "pydock: aborted")
    assert _store(pydock.root) == before
    assert [n for n in os.listdir(pydock.root / "blobs") if n != "sha256"] == []


def pydock_command(pydock: Pydock) -> list[str]:
    from pydock.testing.cli import PYDOCK

    return [PYDOCK, "--root", str(pydock.root)]


def test_a_hostile_layer_is_refused_as_in_a_load(pydock: Pydock, fake: FakeRegistry,
                                                 tmp_path: Path) -> None:
    from pydock.testing.tar import reg, tar_bytes

    layer = tar_bytes([reg("../escape", b"out of the layer\n")])
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]}}).encode()
    body = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": _descriptor(config, "application/vnd.oci.image.config.v1+json"),
        "layers": [_descriptor(layer, "application/vnd.oci.image.layer.v1.tar")],
    }).encode()
    blobs = {f"sha256:{hashlib.sha256(b).hexdigest()}": b for b in (config, layer)}
    fake.add_image(REPO, "hostile", body, OCI_MANIFEST, blobs)
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:hostile"], "../escape")
    assert not (pydock.root / "escape").exists()
    assert not (pydock.root / "layers" / "escape").exists()


def test_login_needs_a_user_and_a_password_without_a_terminal(pydock: Pydock,
                                                              fake: FakeRegistry) -> None:
    pydock.env["REGISTRY_AUTH_FILE"] = str(pydock.root.parent / "auth.json")
    _refused(pydock, ["login", fake.host], "login needs -u USER (no terminal to ask on)")
    _refused(pydock, ["login", "-u", "me", fake.host], "login needs --password-stdin or -p")
    _refused(pydock, ["login", "-u", "me", "--password-stdin", fake.host],
             "login needs a user name and a password")
    _refused(pydock, ["login", "-u", "me", "-p", "x", "--password-stdin", fake.host],
             "mutually exclusive")
    _refused(pydock, ["login", "a/b"], "invalid registry 'a/b': expected HOST[:PORT]")
    _refused(pydock, ["pull", "--platform", "linux", f"{fake.host}/{REPO}:1"],
             "invalid platform 'linux'")
    _refused(pydock, ["pull", "--tls-verify", "maybe", f"{fake.host}/{REPO}:1"],
             "--tls-verify: expected true or false")
    _refused(pydock, ["push", f"{fake.host}/{REPO}@sha256:{'1' * 64}"],
             "push names a tag, not a digest")
    _refused(pydock, ["push", "nothing:here"], "no such image: nothing:here")


def test_image_pull_is_pull(pydock: Pydock, fake: FakeRegistry) -> None:
    out = pydock.ok("image", "pull", "-q", f"{fake.host}/{REPO}:1")
    assert out.startswith("sha256:")
    # An open registry lets anyone log in, as docker finds; the file is written 0600.
    auth = pydock.root.parent / "auth.json"
    pydock.env["REGISTRY_AUTH_FILE"] = str(auth)
    assert pydock.ok("login", "-u", "me", "--password-stdin", fake.host,
                     input="pw\n") == "Login Succeeded!\n"
    assert auth.stat().st_mode & 0o777 == 0o600
    assert pydock.ok("logout", fake.host) == f"Removed login credentials for {fake.host}\n"


def test_a_terminal_gets_one_progress_line_per_layer(pydock: Pydock, fake: FakeRegistry,
                                                     layers3: list[Layer]) -> None:
    import pty

    from pydock.testing.cli import PYDOCK

    master, slave = pty.openpty()
    try:
        result = subprocess.run([PYDOCK, "--root", str(pydock.root), "pull",
                                 f"{fake.host}/{REPO}:1"], stdout=subprocess.PIPE,
                                stderr=slave, stdin=subprocess.DEVNULL, env=pydock.env,
                                timeout=60)
        os.set_blocking(master, False)
        shown = b""
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(master, 65536):
                shown += chunk
    finally:
        os.close(slave)
        os.close(master)
    assert result.returncode == 0
    text = shown.decode()
    for layer in layers3:
        assert f"{layer.digest.removeprefix('sha256:')[:12]}: done" in text
    assert "\x1b[K" in text and "pulled " not in text  # redrawn lines, no summary line


def test_prune_collects_blobs_no_image_names_once_they_are_an_hour_old(
        pydock: Pydock, fake: FakeRegistry, layers3: list[Layer]) -> None:
    pydock.ok("pull", f"{fake.host}/{REPO}:1")
    blobs = pydock.root / "blobs" / "sha256"
    named = set(os.listdir(blobs))
    young, old = blobs / ("a" * 64), blobs / ("b" * 64)
    young.write_bytes(b"verified by a pull that failed just now")
    old.write_bytes(b"verified by a pull that failed yesterday")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    assert pydock.ok("prune") == ""
    assert set(os.listdir(blobs)) == named | {young.name}
    # An image's blobs stay with it, however old, and go with it.
    for name in named:
        os.utime(blobs / name, (time.time() - 7200, time.time() - 7200))
    pydock.ok("prune")
    assert named <= set(os.listdir(blobs))
    pydock.ok("image", "rm", f"{fake.host}/{REPO}:1")
    assert len(set(os.listdir(blobs)) & named) == 3  # the default image's: tar, config, manifest


def test_a_repository_behind_auth_on_an_open_registry(pydock: Pydock, fake: FakeRegistry,
                                                      tmp_path: Path) -> None:
    import base64

    path = f"/v2/{REPO}/manifests/1"
    body, media_type = fake.manifests[f"{REPO}:1"]
    expected = "Basic " + base64.b64encode(b"me:pw").decode()

    def guarded(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("Authorization") != expected:
            FakeRegistry.reply(handler, 401, b"{}", {"WWW-Authenticate": 'Basic realm="r"'})
        else:
            FakeRegistry.reply(handler, 200, body, {"Content-Type": media_type})

    fake.misbehave[path] = guarded
    pydock.env["REGISTRY_AUTH_FILE"] = str(tmp_path / "auth.json")
    _refused(pydock, ["pull", f"{fake.host}/{REPO}:1"],
             f"authentication required: run `pydock login {fake.host}`")
    pydock.ok("login", "-u", "me", "--password-stdin", fake.host, input="pw")
    pydock.ok("pull", f"{fake.host}/{REPO}:1")
