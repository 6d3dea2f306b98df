"""Registry credentials in the files users already have, as podman and docker read them.

Read, first hit wins: ``$REGISTRY_AUTH_FILE`` when set (podman's and skopeo's override), else
``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's), then ``~/.docker/config.json``
(docker's). Both hold ``{"auths": {"HOST[:PORT]": {"auth": base64("user:password")}}}``;
docker keys Docker Hub as ``https://index.docker.io/v1/``, podman as ``docker.io``: both are
taken. ``login`` writes one file, the first of the list that applies (the same order), mode
0600, replaced atomically with every other key in it kept; ``logout`` removes the entry from
every file that has it. Credential helpers (``credsStore``) are not run.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path
from typing import Any

from pydock.core.errors import PydockError
from pydock.core.files import write_bytes_atomic

_HUB_KEYS = ("docker.io", "https://index.docker.io/v1/", "index.docker.io",
             "registry-1.docker.io")


def auth_files() -> list[Path]:
    """The files credentials are read from, in order."""
    override = os.environ.get("REGISTRY_AUTH_FILE")
    if override:
        return [Path(override)]
    files = []
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        files.append(Path(runtime) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def _keys(host: str) -> tuple[str, ...]:
    return _HUB_KEYS if host == "docker.io" else (host, f"https://{host}", f"http://{host}")


def lookup(host: str) -> tuple[str, str] | None:
    """(user, password) for registry ``host``, or None for anonymous access."""
    for path in auth_files():
        auths = _read(path).get("auths")
        if not isinstance(auths, dict):
            continue
        for key in _keys(host):
            entry = auths.get(key)
            if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
                return _decode(entry["auth"], path)
    return None


def store(host: str, user: str, password: str) -> Path:
    """Save the credentials for ``host``; the file written."""
    path = auth_files()[0]
    document = _read(path)
    auths = document.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise PydockError(f"{path}: \"auths\" is not a JSON object")
    for key in _keys(host)[1:]:
        auths.pop(key, None)
    auths[_keys(host)[0]] = {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(document, indent=1).encode(), mode=0o600)
    return path


def remove(host: str) -> list[Path]:
    """Forget the credentials for ``host`` everywhere; the files changed."""
    changed = []
    for path in auth_files():
        document = _read(path)
        auths = document.get("auths")
        if not isinstance(auths, dict):
            continue
        if any(auths.pop(key, None) is not None for key in _keys(host)):
            write_bytes_atomic(path, json.dumps(document, indent=1).encode(), mode=0o600)
            changed.append(path)
    return changed


def _read(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise PydockError(f"cannot read credentials from {path}: {exc}") from None
    if not isinstance(document, dict):
        raise PydockError(f"cannot read credentials from {path}: not a JSON object")
    return document


def _decode(auth: str, path: Path) -> tuple[str, str]:
    try:
        user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise PydockError(f"{path}: an \"auth\" entry is not base64 of user:password")
    return user, password
