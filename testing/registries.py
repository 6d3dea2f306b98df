"""Real registries for tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1.

Each is started on a free port with a private storage directory and stopped after, in one
of three set-ups: plain HTTP and anonymous; HTTPS with a self-signed CA and htpasswd basic
auth (:func:`make_tls`, :func:`htpasswd`); bearer tokens from a small token server run in
the test's own process (:class:`TokenServer`), signed as Docker Hub's are (a JWT whose
``x5c`` header carries the certificate the registry trusts). Certificates and keys are made
with the ``openssl`` command; the htpasswd file with apache2-utils' ``htpasswd``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, urlparse

REGISTRY_BINARY = "docker-registry"
USER, PASSWORD = "tester", "s3cret-Pass"


def have_registry() -> bool:
    return shutil.which(REGISTRY_BINARY) is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class RunningRegistry:
    host: str  # 127.0.0.1:PORT
    data: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def registry(workdir: Path, *, auth: dict[str, Any] | None = None,
             tls: tuple[Path, Path] | None = None) -> Iterator[RunningRegistry]:
    """A docker-registry on 127.0.0.1, stopped (and its port free again) on leaving."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    http: dict[str, Any] = {"addr": f"127.0.0.1:{port}"}
    if tls:
        http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    config: dict[str, Any] = {
        "version": 0.1, "log": {"level": "error", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")},
                    "delete": {"enabled": True}},
        "http": http,
    }
    if auth:
        config["auth"] = auth
    # JSON is YAML: no YAML writer needed.
    (workdir / "config.yml").write_text(json.dumps(config))
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen([REGISTRY_BINARY, "serve", str(workdir / "config.yml")],
                               stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, process, workdir / "registry.log")
        yield RunningRegistry(f"127.0.0.1:{port}", workdir / "data", process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not listen on {port}: {log.read_text()}")


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca), "-days", "2", "-subj", "/CN=pydock test CA")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")
    extensions = directory / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(extensions))
    return ca, cert, key


def htpasswd(path: Path, user: str = USER, password: str = PASSWORD) -> Path:
    line = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                          capture_output=True, text=True).stdout.strip()
    path.write_text(line + "\n")
    return path


class _Served:
    """An HTTP server on 127.0.0.1, in a thread while the ``with`` block lasts."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()


class TokenServer(_Served):
    """A bearer-token server as Docker Hub's: ``GET /token?service=S&scope=repository:N:A``
    with the user's basic credentials (or none) gives ``{"token": JWT}``; the JWT grants
    every scope asked to :data:`USER`, and nothing to anonymous callers. Wrong credentials
    get 401. It signs with an RSA key whose self-signed certificate the registry trusts."""

    SERVICE = "pydock-test-registry"
    ISSUER = "pydock-test-token-server"

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = directory / "token.key", directory / "token.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                 "-out", str(self.cert), "-days", "2", "-subj", "/CN=pydock token issuer")
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server._serve(self)

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": self.SERVICE, "issuer": self.ISSUER,
                          "rootcertbundle": str(self.cert)}}

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        query = parse_qs(urlparse(handler.path).query)
        header = handler.headers.get("Authorization", "")
        user = None
        if header.startswith("Basic "):
            name, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (name, password) != (USER, PASSWORD):
                handler.send_response(401)
                handler.end_headers()
                return
            user = name
        self.requests.append({"user": user, **query})
        access = []
        for scope in query.get("scope", []) if user else []:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        body = json.dumps({"token": self._sign({
            "iss": self.ISSUER, "sub": user or "", "aud": query.get("service", [""])[0],
            "exp": int(time.time()) + 300, "nbf": int(time.time()) - 10,
            "iat": int(time.time()), "jti": base64.b64encode(
                str(time.monotonic_ns()).encode()).decode(), "access": access,
        })}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _sign(self, claims: dict[str, Any]) -> str:
        def part(value: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        signed = f"{part({'typ': 'JWT', 'alg': 'RS256', 'x5c': [self._x5c]})}.{part(claims)}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signed.encode(), check=True,
                                   capture_output=True).stdout
        return f"{signed}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


class FakeRegistry(_Served):
    """A registry served from memory on 127.0.0.1 that can misbehave on purpose.

    ``images[(repository, tag)] = manifest bytes`` and ``blobs[digest] = bytes`` are served as
    distribution serves them (manifests also by digest); ``misbehave[path]`` replaces the
    answer for one URL path with a function of the handler; ``hits`` counts requests by path.
    """

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[bytes, str]] = {}  # "repo:ref" -> (body, media type)
        self.blobs: dict[str, bytes] = {}
        self.misbehave: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._serve(self)

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(Handler)
        self.host = f"127.0.0.1:{self.port}"

    def add_image(self, repository: str, tag: str, manifest: bytes, media_type: str,
                  blobs: dict[str, bytes]) -> str:
        import hashlib

        digest = f"sha256:{hashlib.sha256(manifest).hexdigest()}"
        self.manifests[f"{repository}:{tag}"] = (manifest, media_type)
        self.manifests[f"{repository}:{digest}"] = (manifest, media_type)
        self.blobs.update(blobs)
        return digest

    @staticmethod
    def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
              headers: dict[str, str] | None = None) -> None:
        handler.send_response(status)
        for key, value in (headers or {}).items():
            handler.send_header(key, value)
        if "Content-Length" not in (headers or {}):
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlparse(handler.path).path
        self.hits[path] = self.hits.get(path, 0) + 1
        if path in self.misbehave:
            self.misbehave[path](handler)
            return
        if path == "/v2/":
            self.reply(handler, 200, b"{}")
            return
        parts = path.removeprefix("/v2/").rsplit("/", 2)
        repository, kind, ref = parts if len(parts) == 3 else ("", "", "")
        not_found = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN" if kind == "manifests"
                                            else "BLOB_UNKNOWN", "message": "unknown"}]})
        if kind == "manifests" and f"{repository}:{ref}" in self.manifests:
            body, media_type = self.manifests[f"{repository}:{ref}"]
            self.reply(handler, 200, body, {"Content-Type": media_type})
        elif kind == "blobs" and ref in self.blobs:
            self.reply(handler, 200, self.blobs[ref],
                       {"Content-Type": "application/octet-stream"})
        else:
            self.reply(handler, 404, not_found.encode(), {"Content-Type": "application/json"})
