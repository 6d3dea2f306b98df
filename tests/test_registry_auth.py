"""login, logout, and pull/push with credentials: basic auth over TLS, and bearer tokens.

Two real registries (Debian's docker-registry on 127.0.0.1): one with htpasswd basic auth
behind TLS, its self-signed CA under a temporary certs.d (``PYDOCK_CERTS_DIRS``); one whose
tokens come from a token server the test runs, as Docker Hub's do. Credentials go to the
file ``REGISTRY_AUTH_FILE`` names, or are read from ``~/.docker/config.json``.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_images import skopeo

from pydock.testing.cli import Pydock
from pydock.testing.registries import (
    PASSWORD,
    USER,
    RunningRegistry,
    TokenServer,
    have_registry,
    htpasswd,
    make_tls,
    registry,
)

pytestmark = pytest.mark.skipif(not have_registry(),
                                reason="docker-registry (Debian package) is not installed")


@pytest.fixture(scope="module")
def tls_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tls")


@pytest.fixture(scope="module")
def basic_tls(tls_dir: Path) -> Iterator[tuple[RunningRegistry, Path]]:
    """The registry with basic auth over TLS, and its CA certificate."""
    ca, cert, key = make_tls(tls_dir / "pki")
    auth = {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd(tls_dir / "htpasswd"))}}
    with registry(tls_dir / "registry", auth=auth, tls=(cert, key)) as running:
        yield running, ca


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[RunningRegistry, TokenServer]]:
    directory = tmp_path_factory.mktemp("token")
    with TokenServer(directory / "issuer") as tokens, registry(
            directory / "registry", auth=tokens.registry_auth()) as running:
        yield running, tokens


def _env(tmp_path: Path, **more: str) -> dict[str, str]:
    return {"REGISTRY_AUTH_FILE": str(tmp_path / "auth.json"), **more}


def _certs_d(tmp_path: Path, host: str, ca: Path) -> str:
    directory = tmp_path / "certs.d" / host
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    return str(tmp_path / "certs.d")


def test_basic_auth_over_tls(pydock: Pydock, basic_tls: tuple[RunningRegistry, Path],
                             tmp_path: Path) -> None:
    running, ca = basic_tls
    host = running.host
    target = f"{host}/team/default:1"
    pydock.ok("tag", "pydock/default", target)
    # Not trusted yet: its CA is in no certs.d.
    pydock.env.update(_env(tmp_path, PYDOCK_CERTS_DIRS=str(tmp_path / "nowhere")))
    pydock.refused("login", "-u", USER, "--password-stdin", host, input=PASSWORD,
                   match="certificate verify failed")
    pydock.env["PYDOCK_CERTS_DIRS"] = _certs_d(tmp_path, host, ca)
    # Trusted, but no credentials.
    pydock.refused("push", target, match=f"authentication required: run `pydock login {host}`")
    pydock.refused("login", "-u", USER, "--password-stdin", host, input="wrong",
                   match="wrong username or password")
    assert not (tmp_path / "auth.json").exists()
    assert pydock.ok("login", "-u", USER, "--password-stdin", host,
                     input=PASSWORD + "\n") == "Login Succeeded!\n"
    auth_file = tmp_path / "auth.json"
    assert stat.S_IMODE(auth_file.stat().st_mode) == 0o600
    entry = json.loads(auth_file.read_text())["auths"][host]["auth"]
    assert base64.b64decode(entry).decode() == f"{USER}:{PASSWORD}"
    # Push, then skopeo (with the same credentials and CA) sees the same manifest.
    digest = pydock.ok("push", target).split("digest: ")[1].split()[0]
    inspected = json.loads(skopeo("inspect", "--creds", f"{USER}:{PASSWORD}", "--cert-dir",
                                  str(tmp_path / "certs.d" / host), f"docker://{target}"))
    assert inspected["Digest"] == digest
    # Back into the store after it was removed, and runnable.
    image_id = json.loads(skopeo("inspect", "--raw", "--creds", f"{USER}:{PASSWORD}",
                                 "--cert-dir", str(tmp_path / "certs.d" / host),
                                 f"docker://{target}"))["config"]["digest"]
    assert image_id == json.loads(pydock.ok("image", "inspect", target))["Id"]
    pydock.ok("image", "rm", target)
    assert pydock.ok("pull", "-q", target).strip() == image_id
    assert pydock.ok("run", "--rm", "--image", target, "echo", "over tls") == "over tls\n"
    # Logged out: refused again, and a second logout says there is nothing to forget.
    assert pydock.ok("logout", host) == f"Removed login credentials for {host}\n"
    assert host not in json.loads(auth_file.read_text())["auths"]
    pydock.refused("pull", target, match="authentication required")
    pydock.refused("logout", host, match=f"not logged in to {host}")


def test_credentials_are_read_from_docker_config(
        pydock: Pydock, basic_tls: tuple[RunningRegistry, Path], tmp_path: Path) -> None:
    running, ca = basic_tls
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (home / ".docker" / "config.json").write_text(json.dumps(
        {"auths": {f"https://{running.host}": {"auth": token}}}))
    pydock.env.update({"HOME": str(home), "PYDOCK_CERTS_DIRS": _certs_d(tmp_path, running.host,
                                                                         ca)})
    target = f"{running.host}/team/fromconfig:1"
    pydock.ok("tag", "pydock/default", target)
    assert "digest: sha256:" in pydock.ok("push", target)
    # XDG_RUNTIME_DIR's auth.json comes first: a wrong password there is what is used.
    runtime = tmp_path / "run"
    (runtime / "containers").mkdir(parents=True)
    wrong = base64.b64encode(f"{USER}:nope".encode()).decode()
    (runtime / "containers" / "auth.json").write_text(json.dumps(
        {"auths": {running.host: {"auth": wrong}}}))
    pydock.env["XDG_RUNTIME_DIR"] = str(runtime)
    pydock.refused("pull", target, match="wrong username or password")


def test_bearer_tokens_from_the_realm(pydock: Pydock,
                                      token_registry: tuple[RunningRegistry, TokenServer],
                                      tmp_path: Path) -> None:
    running, tokens = token_registry
    host = running.host
    target = f"{host}/team/tokened:1"
    pydock.ok("tag", "pydock/default", target)
    pydock.env.update(_env(tmp_path))
    # Anonymous: a token that grants nothing, so the push is refused.
    pydock.refused("push", target, match="unauthorized")
    pydock.refused("login", "-u", USER, "--password-stdin", host, input="wrong",
                   match="wrong username or password")
    pydock.ok("login", "-u", USER, "--password-stdin", host, input=PASSWORD)
    digest = pydock.ok("push", target).split("digest: ")[1].split()[0]
    asked = [r for r in tokens.requests if r["user"] == USER and "scope" in r]
    assert asked[-1]["scope"] == ["repository:team/tokened:pull,push"]
    assert asked[-1]["service"] == [TokenServer.SERVICE]
    image_id = json.loads(pydock.ok("image", "inspect", target))["Id"]
    pydock.ok("image", "rm", target)
    out = pydock.ok("pull", target).splitlines()
    assert (out[0], out[2]) == (f"Digest: {digest}", image_id)
    assert os.stat(tmp_path / "auth.json").st_mode & 0o077 == 0
