"""One repository on one registry: HTTP API v2 requests with TLS, authentication and retries.

How a connection is chosen, as podman does: HTTPS, verified against the system's CAs and the
registry's ``certs.d`` (:mod:`.certs`); plain HTTP only for a loopback registry
(``localhost``, ``127.0.0.0/8``, ``::1``) or with ``tls_verify=False``, and then only when
HTTPS fails. Docker Hub (``docker.io``) is served at ``registry-1.docker.io``.

How authentication goes, as docker does: ``GET /v2/`` first. 200: anonymous. 401 with
``WWW-Authenticate: Basic``: the user's credentials on every request. 401 with ``Bearer
realm=...,service=...``: a token from the realm for ``service`` and the scopes the command
needs (``repository:NAME:pull[,push]``), asked with the credentials when there are some and
anonymously otherwise, then sent as ``Authorization: Bearer``.

Every failure is one line (a :class:`RegistryError`): the registry down or unknown, a refused
login, a missing repository or tag (with the registry's own error code), a redirect loop, a
broken connection. 429 is retried after its ``Retry-After`` (at most :data:`_MAX_WAIT` s,
:data:`_RETRIES` times), then refused.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from pydock.core.errors import PydockError
from pydock.core.images.registry import certs, credentials

MAX_MANIFEST = 4 << 20
"""The largest manifest or index read, as containerd and distribution limit it: a bigger
one is no manifest, and reading it would be memory for nothing."""

_RETRIES = 3
_MAX_WAIT = 10.0
_CHUNK = 1 << 20
_MAX_REDIRECTS = 10


class RegistryError(PydockError):
    """A registry refused, or could not be reached."""


def is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Registry:
    """The API of one registry ``host`` for one ``repository`` (``library/debian``)."""

    def __init__(self, host: str, repository: str, *, tls_verify: bool = True,
                 actions: str = "pull", extra_scopes: tuple[str, ...] = (),
                 auth: tuple[str, str] | None = None) -> None:
        self.host = host
        self.repository = repository
        self._api_host = "registry-1.docker.io" if host == "docker.io" else host
        self._tls_verify = tls_verify
        self._scopes = (*([f"repository:{repository}:{actions}"] if repository else []),
                        *extra_scopes)
        self._auth = auth if auth is not None else credentials.lookup(host)
        self._authorization: str | None = None
        self._client: httpx.Client | None = None
        self.base = ""

    # -- connection and authentication -----------------------------------

    def connect(self) -> None:
        """Choose HTTPS or HTTP and authenticate (see the module docstring)."""
        if self._client is not None:
            return
        verify: Any = certs.tls_context(self.host) if self._tls_verify else False
        self._client = httpx.Client(verify=verify, follow_redirects=True,
                                    max_redirects=_MAX_REDIRECTS,
                                    timeout=httpx.Timeout(60.0, connect=15.0))
        schemes = ["https"]
        if is_loopback(self.host) or not self._tls_verify:
            schemes.append("http")
        response = None
        for number, scheme in enumerate(schemes):
            self.base = f"{scheme}://{self._api_host}"
            try:
                response = self._client.get(f"{self.base}/v2/")
                break
            except httpx.ConnectError as exc:
                if "certificate verify failed" in str(exc).lower():
                    # A TLS server whose certificate is not trusted: never fall back to
                    # plain HTTP past it.
                    self.close()
                    raise RegistryError(
                        f"registry {self.host}: {_reason(exc)} (its CA belongs in "
                        f"{certs.cert_dirs(self.host)[0]}/ca.crt, or use --tls-verify=false)"
                    ) from None
                if number == len(schemes) - 1:
                    self.close()
                    raise RegistryError(f"cannot reach registry {self.host}: "
                                        f"{_reason(exc)}") from None
            except httpx.HTTPError as exc:
                self.close()
                raise self._error("GET /v2/", exc) from None
        assert response is not None
        if response.status_code == 401:
            self._authenticate(response)
            response = self._checked("GET", f"{self.base}/v2/")
        elif response.status_code != 200:
            self.close()
            raise RegistryError(f"{self.host} is not a registry (GET /v2/: HTTP "
                                f"{response.status_code})")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Registry:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _authenticate(self, response: httpx.Response) -> None:
        scheme, params = _parse_challenge(response.headers.get("www-authenticate", ""))
        if scheme == "basic":
            if self._auth is None:
                raise RegistryError(f"{self.host}: authentication required: run "
                                    f"`pydock login {self.host}`")
            self._authorization = _basic(*self._auth)
        elif scheme == "bearer" and params.get("realm"):
            self._authorization = f"Bearer {self._token(params)}"
        else:
            raise RegistryError(f"{self.host}: unsupported authentication challenge "
                                f"{response.headers.get('www-authenticate')!r}")

    def _token(self, params: dict[str, str]) -> str:
        assert self._client is not None
        query: list[tuple[str, str | int | float | bool | None]] = [
            ("scope", s) for s in self._scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers = {}
        if self._auth:
            headers["Authorization"] = _basic(*self._auth)
            query.append(("account", self._auth[0]))
        try:
            response = self._client.get(params["realm"], params=query, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"cannot get a token from {params['realm']}: "
                                f"{_reason(exc)}") from None
        if response.status_code in (401, 403):
            raise RegistryError(f"{self.host}: unauthorized: "
                                + ("wrong username or password" if self._auth else
                                   f"authentication required: run `pydock login {self.host}`"))
        try:
            document = response.json()
            token = document.get("token") or document.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if response.status_code != 200 or not isinstance(token, str):
            raise RegistryError(f"token server {params['realm']} gave no token "
                                f"(HTTP {response.status_code})")
        return token

    # -- requests ----------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.base}/v2/{self.repository}/{path}"

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> httpx.Response:
        """A request whose body is read, with authentication and 429 retries; refused
        statuses stay for the caller to judge (see :meth:`fail`)."""
        with self.stream(method, path_or_url, **kwargs) as response:
            response.read()
            return response

    @contextmanager
    def stream(self, method: str, path_or_url: str,
               **kwargs: Any) -> Iterator[httpx.Response]:
        self.connect()
        assert self._client is not None
        url = path_or_url if "://" in path_or_url else self.url(path_or_url)
        for attempt in range(_RETRIES + 1):
            headers = dict(kwargs.pop("headers", None) or {})
            kwargs["headers"] = headers
            if self._authorization:
                headers["Authorization"] = self._authorization
            try:
                request = self._client.build_request(method, url, **kwargs)
                response = self._client.send(request, stream=True)
            except httpx.HTTPError as exc:
                raise self._error(f"{method} {_path(url)}", exc) from None
            if (response.status_code == 401 and self._authorization is None
                    and response.headers.get("www-authenticate") and "content" not in kwargs):
                # A registry whose /v2/ was open but whose repository is not (some put
                # only their private repositories behind tokens): authenticate now, once.
                response.close()
                self._authenticate(response)
                continue
            if response.status_code == 429 and attempt < _RETRIES:
                wait = _retry_after(response)
                response.close()
                if wait is not None and wait <= _MAX_WAIT:
                    time.sleep(wait)
                    continue
                raise RegistryError(f"{self.host}: too many requests (HTTP 429)"
                                    + (f": retry after {wait:.0f} s" if wait else ""))
            try:
                yield response
            except httpx.HTTPError as exc:
                raise self._error(f"{method} {_path(url)}", exc) from None
            finally:
                response.close()
            return
        raise RegistryError(f"{self.host}: too many requests (HTTP 429), {_RETRIES} "
                            "retries later")

    def fail(self, response: httpx.Response, what: str) -> RegistryError:
        """The error for a refused request, in one line, with the registry's own code."""
        if response.status_code == 429:
            return RegistryError(f"{self.host}: too many requests (HTTP 429)")
        detail = _registry_errors(response)
        if response.status_code == 401:
            return RegistryError(f"{self.host}: unauthorized to {what}"
                                 + (f": {detail}" if detail else ""))
        if response.status_code == 404:
            return RegistryError(f"{what}: not found"
                                 + (f" ({detail})" if detail else ""))
        return RegistryError(f"{what}: HTTP {response.status_code}"
                             + (f" ({detail})" if detail else ""))

    def _checked(self, method: str, url: str) -> httpx.Response:
        response = self.request(method, url)
        if response.status_code in (401, 403):
            raise RegistryError(f"{self.host}: unauthorized: "
                                + ("wrong username or password" if self._auth else
                                   f"authentication required: run `pydock login {self.host}`"))
        if response.status_code != 200:
            raise self.fail(response, f"{method} {_path(url)}")
        return response

    def _error(self, what: str, exc: httpx.HTTPError) -> RegistryError:
        if isinstance(exc, httpx.TooManyRedirects):
            return RegistryError(f"{self.host}: {what}: more than {_MAX_REDIRECTS} redirects "
                                 "(a redirect loop)")
        if isinstance(exc, httpx.ConnectError):
            return RegistryError(f"cannot reach registry {self.host}: {_reason(exc)}")
        if isinstance(exc, httpx.TimeoutException):
            return RegistryError(f"{self.host}: {what}: timed out")
        return RegistryError(f"{self.host}: {what}: connection broken: {_reason(exc)}")

    # -- what pull and push read -------------------------------------------

    def read_limited(self, response: httpx.Response, what: str,
                     limit: int = MAX_MANIFEST) -> bytes:
        """The body of a streamed response, refused past ``limit`` bytes."""
        length = response.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise RegistryError(f"{what}: {int(length)} bytes, more than the {limit} a "
                                "manifest may have")
        body = bytearray()
        for chunk in response.iter_raw(_CHUNK):
            body += chunk
            if len(body) > limit:
                raise RegistryError(f"{what}: more than the {limit} bytes a manifest may have")
        return bytes(body)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="https://auth",service="registry",scope="..."`` -> ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    while rest:
        key, _, rest = rest.strip().lstrip(",").strip().partition("=")
        if rest.startswith('"'):
            value, _, rest = rest[1:].partition('"')
        else:
            value, _, rest = rest.partition(",")
        if key:
            params[key.strip().lower()] = value
    return scheme.lower(), params


def _basic(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None


def _registry_errors(response: httpx.Response) -> str:
    """The registry's ``{"errors": [{"code", "message"}]}``, as ``CODE: message``."""
    try:
        errors = json.loads(response.read()[:65536])["errors"]
        return "; ".join(f"{e.get('code', '')}: {e.get('message', '')}"[:200] for e in errors[:3])
    except (ValueError, KeyError, TypeError, AttributeError, httpx.HTTPError):
        return ""


def _path(url: str) -> str:
    return "/" + url.split("://", 1)[-1].partition("/")[2].partition("?")[0]


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())[:300]
