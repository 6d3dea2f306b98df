"""The bridge network of a storage root: its settings, address leases, ``-p``, and cleanup.

Everything lives under ``<root>/network``:

- ``config.json`` (optional): ``{"default": "bridge", "bridge": "pydock0", "subnet":
  "10.87.0.0/16", "table": "pydock"}``, each key optional. ``default`` is the network of
  a ``run`` without ``--network`` (docker's is the bridge); ``bridge`` the link's name and
  ``table`` the nftables table's, both host-wide names: two storage roots share a bridge
  only if they name the same one, so a second root (a test's, say) names its own, with a
  subnet of its own, and never touches the first's;
- ``leases/<address>``: one file per container on the bridge, made with O_EXCL under the
  ``lock`` file's flock: its id, and the ports it publishes. The address is the file's
  name, so two containers can never hold one.

A container's network, in order (each step a failpoint: a crash at any of them leaves
what ``rm`` and ``prune`` remove): the lease is taken once the record exists
(``net.leased``); the bridge and the table are made if missing (``net.bridge-ready``); the
namespace and the veth pair (``net.veth-created``); the published ports
(``net.ports-published``). It is all released in the reverse order when the container
exits (by its monitor), by ``rm``, and by ``prune`` for a record that is gone; ``prune``
also deletes a veth of the bridge that no lease names, and the bridge and the table once
no lease is left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from pydock.core import failpoints
from pydock.core.errors import PydockError
from pydock.core.files import flocked, write_bytes_atomic
from pydock.core.runtime import nft
from pydock.core.runtime.nft import Published
from pydock.core.storage_root import NETWORK

if TYPE_CHECKING:
    import ipaddress

NETWORK_DIR = NETWORK
DEFAULTS = {"default": "bridge", "bridge": "pydock0", "subnet": "10.87.0.0/16",
            "table": "pydock"}
VETH_PREFIX = "pd"
_PUBLISH = re.compile(r"(?:(?P<ip>[0-9]+(?:\.[0-9]+){3}):)?(?:(?P<host>[0-9]*):)?(?P<port>[0-9]+)"
                      r"(?:/(?P<proto>tcp|udp))?")
_LINK_NAME = r"[a-zA-Z0-9_.-]{1,15}"
_TABLE_NAME = r"[a-zA-Z][a-zA-Z0-9_]{0,63}"


class PortSpec(NamedTuple):
    """A ``-p`` as asked: host port 0 is any free one."""

    proto: str
    host_ip: str
    host_port: int
    port: int


class Config(NamedTuple):
    default: str
    bridge: str
    subnet: str
    table: str

    def network(self) -> ipaddress.IPv4Network:
        import ipaddress

        return ipaddress.IPv4Network(self.subnet)

    def gateway(self) -> str:
        return str(next(self.network().hosts()))


def read_config(root: Path) -> Config:
    """The root's network settings; PydockError (one line) for a bad file."""
    path = root / NETWORK_DIR / "config.json"
    try:
        given = json.loads(path.read_bytes())
    except FileNotFoundError:
        given = {}
    except (OSError, ValueError) as exc:
        raise PydockError(f"{path}: cannot read it: {exc}") from None
    if not isinstance(given, dict) or not set(given) <= set(DEFAULTS) or not all(
            isinstance(value, str) for value in given.values()):
        raise PydockError(f"{path}: expected an object with string values for "
                          f"{', '.join(DEFAULTS)}")
    config = Config(**{**DEFAULTS, **given})
    if not re.fullmatch(_LINK_NAME, config.bridge):
        raise PydockError(f"{path}: bad bridge name {config.bridge!r}")
    if not re.fullmatch(_TABLE_NAME, config.table):
        raise PydockError(f"{path}: bad table name {config.table!r}")
    return config


def parse_publish(specs: Sequence[str], publish_all: bool,
                  exposed: dict[str, Any] | None) -> list[PortSpec]:
    """``-p`` and ``-P`` (every port the image's ExposedPorts names, on a free host port)."""
    wanted = []
    for spec in specs:
        match = _PUBLISH.fullmatch(spec)
        if match is None:
            raise PydockError(f"invalid -p {spec!r}: expected "
                              "[IP:][HOST_PORT:]CONTAINER_PORT[/tcp|udp]")
        host_ip = match["ip"] or ""
        if host_ip:
            _check_ipv4(host_ip, spec)
        if host_ip == "0.0.0.0":
            host_ip = ""
        host_port = int(match["host"]) if match["host"] else 0
        port = int(match["port"])
        if host_port > 65535 or not 0 < port < 65536:
            raise PydockError(f"invalid -p {spec!r}: a port is out of range")
        wanted.append(PortSpec(match["proto"] or "tcp", host_ip, host_port, port))
    if publish_all:
        if exposed is not None and not isinstance(exposed, dict):
            raise PydockError("the image's ExposedPorts is not a JSON object, so -P cannot "
                              "publish it")
        for key in exposed or {}:
            number, _, proto = str(key).partition("/")
            if (not number.isdigit() or proto not in ("", "tcp", "udp")
                    or not 0 < int(number) < 65536):
                raise PydockError(f"the image exposes {key!r}, which -P cannot publish")
            wanted.append(PortSpec(proto or "tcp", "", 0, int(number)))
    return wanted


def _check_ipv4(text: str, spec: str) -> None:
    parts = text.split(".")
    if len(parts) != 4 or not all(p.isdigit() and int(p) < 256 for p in parts):
        raise PydockError(f"invalid -p {spec!r}: {text!r} is not an IPv4 address")


# -- leases ---------------------------------------------------------------------------


class Lease(NamedTuple):
    address: str
    container_id: str
    ports: tuple[Published, ...]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.container_id, "ports": [list(port) for port in self.ports]}


def _dir(root: Path) -> Path:
    return root / NETWORK_DIR


@contextlib.contextmanager
def _locked(root: Path) -> Iterator[None]:
    (_dir(root) / "leases").mkdir(mode=0o700, parents=True, exist_ok=True)
    with flocked(_dir(root) / "lock"):
        yield


def check_host() -> None:
    """What the bridge needs from the host, checked before anything is made."""
    import shutil

    if shutil.which("nft") is None:
        raise PydockError("the bridge network needs nft, which is not installed: "
                          f"{nft.INSTALL_HINT} (or run with --network none or host)")


def lease(root: Path, config: Config, container_id: str, wanted: Sequence[PortSpec]) -> Lease:
    """An address of the subnet no other container holds, and the host ports asked for,
    each free on the host and published by no other container."""
    network = config.network()
    gateway = config.gateway()
    with _locked(root):
        leases = read_leases(root)
        taken = {lease.address for lease in leases} | {gateway}
        address = next((str(host) for host in network.hosts() if str(host) not in taken), None)
        if address is None:
            raise PydockError(f"no free address left in {config.subnet}")
        in_use = {(port.proto, port.host_port): port.host_ip
                  for other in leases for port in other.ports}
        ports = tuple(Published(want.proto, want.host_ip,
                                _host_port(want, in_use), address, want.port)
                      for want in wanted)
        granted = Lease(address, container_id, ports)
        write_bytes_atomic(_dir(root) / "leases" / address,
                           json.dumps(granted.to_json()).encode(), durable=False)
    return granted


def _host_port(want: PortSpec, in_use: dict[tuple[str, int], str]) -> int:
    shown = f"{want.host_ip + ':' if want.host_ip else ''}{want.host_port}/{want.proto}"
    if want.host_port and (want.proto, want.host_port) in in_use:
        other = in_use[want.proto, want.host_port]
        if not other or not want.host_ip or other == want.host_ip:
            raise PydockError(f"port {shown} is already published by another container")
    import socket  # on the way to a published port only

    kind = socket.SOCK_STREAM if want.proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((want.host_ip or "0.0.0.0", want.host_port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PydockError(f"port {shown} is already in use on the host") from None
            raise PydockError(f"cannot publish port {shown}: {exc.strerror}") from None
        port = probe.getsockname()[1]
    in_use[want.proto, port] = want.host_ip
    return int(port)


def read_leases(root: Path) -> list[Lease]:
    leases = []
    directory = _dir(root) / "leases"
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    for name in names:
        if name.startswith("."):
            continue
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            data = json.loads((directory / name).read_bytes())
            leases.append(Lease(name, str(data["id"]), tuple(
                Published(str(p[0]), str(p[1]), int(p[2]), str(p[3]), int(p[4]))
                for p in data["ports"])))
    return leases


def lease_of(root: Path, container_id: str) -> Lease | None:
    return next((lease for lease in read_leases(root) if lease.container_id == container_id),
                None)


# -- connecting ---------------------------------------------------------------------------


def veth_name(container_id: str) -> str:
    return VETH_PREFIX + container_id[:12]  # 14 of the kernel's 15 characters


def connect(root: Path, config: Config, granted: Lease) -> int:
    """The container's network namespace, connected to the bridge, its ports published;
    as a descriptor the container's first process enters."""
    from pydock.core.runtime import bridge

    network = config.network()
    gateway = config.gateway()
    with _locked(root):
        made = bridge.ensure_bridge(config.bridge, gateway, network.prefixlen)
        if made or (granted.ports and not nft.table_exists(config.table)):
            nft.ensure_table(config.table, config.bridge, config.subnet)
    failpoints.reached("net.bridge-ready")
    netns = bridge.new_namespace()
    try:
        bridge.connect(netns, veth_name(granted.container_id), config.bridge,
                       granted.address, network.prefixlen, gateway)
        failpoints.reached("net.veth-created")
        nft.publish(config.table, granted.ports)
        failpoints.reached("net.ports-published")
    except BaseException:
        os.close(netns)
        raise
    return netns


def release(root: Path, container_id: str) -> None:
    """Unpublish the container's ports, delete its veth, give back its address: whichever
    of them are there (idempotent; run again after a crash)."""
    granted = lease_of(root, container_id)
    veth = veth_name(container_id)
    if granted is None and not os.path.exists(f"/sys/class/net/{veth}"):
        return
    config = read_config(root)
    if granted is not None and granted.ports:
        nft.unpublish(config.table, granted.ports)
    if not _gone_soon(f"/sys/class/net/{veth}"):
        from pydock.core.runtime import bridge

        bridge.delete_link(veth)
    if granted is not None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_dir(root) / "leases" / granted.address)


def _gone_soon(path: str, wait: float = 0.1) -> bool:
    """Whether ``path`` is gone, or goes within ``wait`` seconds. The callers release a
    container whose processes are dead: its namespace is going, and the kernel deletes
    its veth within a millisecond or so, which spares importing pyroute2 to do it."""
    import time

    deadline = time.monotonic() + wait
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def sweep(root: Path, stale: Sequence[Lease]) -> None:
    """``prune``'s part: the ``stale`` leases (of containers no record names), veths of the
    bridge no lease names, and the bridge and table once no container holds a lease."""
    if not (_dir(root) / "leases").exists():  # this root never used the bridge
        return
    config = read_config(root)
    for lease in stale:
        release(root, lease.container_id)
    with _locked(root):
        leases = read_leases(root)
        named = {veth_name(lease.container_id) for lease in leases}
        with contextlib.suppress(FileNotFoundError):
            for port in os.listdir(f"/sys/class/net/{config.bridge}/brif"):
                if port.startswith(VETH_PREFIX) and port not in named:
                    from pydock.core.runtime import bridge

                    bridge.delete_link(port)
        brif = f"/sys/class/net/{config.bridge}/brif"
        # Only a bridge with no port left: another root that names it may still use it.
        if not leases and not (os.path.isdir(brif) and os.listdir(brif)):
            if os.path.exists(f"/sys/class/net/{config.bridge}"):
                from pydock.core.runtime import bridge

                bridge.delete_link(config.bridge)
            if nft.table_exists(config.table):
                nft.delete_table(config.table)


# -- inspect ----------------------------------------------------------------------------


def settings(root: Path, container_id: str) -> dict[str, Any]:
    """docker inspect's ``NetworkSettings``: the address and ports while the container
    holds its lease (from its creation until it exits), empty values otherwise."""
    granted = lease_of(root, container_id)
    empty: dict[str, Any] = {"Bridge": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                             "MacAddress": "", "Ports": {}}
    if granted is None:
        return empty
    config = read_config(root)
    ports: dict[str, list[dict[str, str]]] = {}
    for port in granted.ports:
        ports.setdefault(f"{port.port}/{port.proto}", []).append(
            {"HostIp": port.host_ip or "0.0.0.0", "HostPort": str(port.host_port)})
    mac = "02:42:" + ":".join(f"{int(part):02x}" for part in granted.address.split("."))
    endpoint = {"Gateway": config.gateway(), "IPAddress": granted.address,
                "IPPrefixLen": config.network().prefixlen, "MacAddress": mac}
    return {**empty, "Bridge": config.bridge, **endpoint, "Ports": ports,
            "Networks": {"bridge": endpoint}}
