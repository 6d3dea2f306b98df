"""TLS for one registry: the system's trust plus its ``certs.d`` directory, as docker and podman.

For a registry ``HOST[:PORT]``, ``/etc/containers/certs.d/HOST[:PORT]/`` and
``/etc/docker/certs.d/HOST[:PORT]/`` may hold ``*.crt`` (extra certificate authorities) and
``NAME.cert`` with ``NAME.key`` (a client certificate). ``PYDOCK_CERTS_DIRS`` (a
colon-separated list) replaces those two bases, for tests and for users who keep them
elsewhere.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from pydock.core.errors import PydockError

CERTS_DIRS_ENV = "PYDOCK_CERTS_DIRS"
_DEFAULT_BASES = ("/etc/containers/certs.d", "/etc/docker/certs.d")


def cert_dirs(host: str) -> list[Path]:
    bases = os.environ.get(CERTS_DIRS_ENV)
    return [Path(base) / host for base in (bases.split(":") if bases else _DEFAULT_BASES)
            if base]


def tls_context(host: str) -> ssl.SSLContext:
    """The context that verifies ``host`` against the system's CAs and its certs.d ones."""
    context = ssl.create_default_context()
    for directory in cert_dirs(host):
        try:
            names = sorted(os.listdir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for name in names:
            path = directory / name
            try:
                if name.endswith(".crt"):
                    context.load_verify_locations(cafile=path)
                elif name.endswith(".cert"):
                    key = path.with_suffix(".key")
                    if not key.exists():
                        raise PydockError(f"{path}: client certificate without {key.name}")
                    context.load_cert_chain(path, key)
            except (OSError, ssl.SSLError) as exc:
                raise PydockError(f"cannot use {path}: {exc}") from None
    return context
