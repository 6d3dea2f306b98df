"""``/etc/hostname``, ``/etc/hosts`` and ``/etc/resolv.conf``: kept per container, bind mounted in.

As docker does, pydock writes the three files in the container's record directory
(``<root>/containers/<name>/hostname``, ``hosts``, ``resolv.conf``: inspect's
``HostnamePath``, ``HostsPath`` and ``ResolvConfPath``) when the container is created, and
bind mounts each, read-write as docker does, over its path in the container's root. What
the container writes to them lands in the record, never in the container's layer, and goes
with ``rm``.

What each holds (docker's rules):

- ``hostname``: the container's hostname; with ``--network host``, the host's.
- ``hosts``: localhost (IPv4 and IPv6) and the container's hostname at its address on the
  bridge (``127.0.1.1`` where it has none: ``--network none``), then ``--add-host``'s
  entries; with ``--network host``, a copy of the host's ``/etc/hosts`` plus
  ``--add-host``'s.
- ``resolv.conf``: the host's. Off the host's network, a loopback nameserver on the host
  (``127.0.0.53``, a local dnsmasq) is not one the container can reach, so such lines are
  dropped, and IPv6 ones too (the bridge has no IPv6); where none is left, docker's
  defaults (8.8.8.8, 8.8.4.4). ``--dns`` replaces the nameservers, ``--dns-search`` the
  search domains.

The mount points, where the image has none, are empty files created inside the root
(:func:`pydock.core.runtime.inroot.open_or_create`: resolved one component at a time, a
symlink followed only inside the root, never onto the host; a FIFO or device there is
covered by the mount, never opened). docker creates them in an "init" layer below the
container's own; pydock creates them in the container's layer, and ``diff``, ``commit``
and ``export``'s siblings leave those empty mount points out
(:func:`pydock.core.layers.changes.without_mount_points`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from pydock.core.errors import PydockError
from pydock.core.files import read_regular, write_bytes_atomic
from pydock.core.runtime.volumes import attach_in_root, mounting
from pydock.core.syscalls import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    mount_setattr_recursive,
    open_tree_clone,
)

# Path in the container -> the file's name in the record directory.
FILES = {"/etc/hostname": "hostname", "/etc/hosts": "hosts", "/etc/resolv.conf": "resolv.conf"}
HOST_RESOLV_CONF = "/etc/resolv.conf"
HOST_HOSTS = "/etc/hosts"
# What docker writes when no nameserver is left (libnetwork's defaults).
DEFAULT_NAMESERVERS = ("8.8.8.8", "8.8.4.4")
_HOST_FILE_LIMIT = 1 << 20
_HOSTNAME = r"[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,252}[a-zA-Z0-9])?"
_DOMAIN = r"[a-zA-Z0-9_]([a-zA-Z0-9_.-]{0,252})?"


class EtcConfig(NamedTuple):
    """What the three files say, from the spec and the network."""

    hostname: str
    network: str  # "none", "host" or "bridge"
    address: str = ""  # the container's on the bridge
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    extra_hosts: tuple[tuple[str, str], ...] = ()  # (host, address)


def parse_dns(servers: Sequence[str]) -> tuple[str, ...]:
    """``--dns``: IP addresses, checked before anything exists."""
    return tuple(_address(server, f"invalid --dns {server!r}") for server in servers)


def parse_dns_search(domains: Sequence[str]) -> tuple[str, ...]:
    for domain in domains:
        if domain != "." and not re.fullmatch(_DOMAIN, domain):
            raise PydockError(f"invalid --dns-search {domain!r}: expected a domain name")
    # docker: "." alone means no search domain at all.
    return tuple(domain for domain in domains if domain != ".")


def parse_add_host(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """``--add-host HOST:IP`` (IPv6 addresses hold colons: the host is before the first)."""
    hosts = []
    for spec in specs:
        host, sep, address = spec.partition(":")
        if not sep or not re.fullmatch(_HOSTNAME, host):
            raise PydockError(f"invalid --add-host {spec!r}: expected HOST:IP")
        hosts.append((host, _address(address.strip("[]"), f"invalid --add-host {spec!r}")))
    return tuple(hosts)


def _address(text: str, context: str) -> str:
    import ipaddress  # a few milliseconds: only when a flag gives an address

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise PydockError(f"{context}: {text!r} is not an IP address") from None


def hostname_file(config: EtcConfig) -> bytes:
    return f"{config.hostname}\n".encode()


def hosts_file(config: EtcConfig, host_hosts: bytes) -> bytes:
    if config.network == "host":
        lines = [host_hosts.decode(errors="replace").rstrip("\n")]
    else:
        lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
                 "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters"]
    lines += [f"{address}\t{host}" for host, address in config.extra_hosts]
    if config.network != "host":
        lines.append(f"{config.address or '127.0.1.1'}\t{config.hostname}")
    return ("\n".join(lines) + "\n").encode()


def resolv_conf(config: EtcConfig, host_resolv: bytes) -> bytes:
    kept: list[str] = []
    servers: list[str] = []
    for line in host_resolv.decode(errors="replace").splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if config.network == "host" or _reachable_off_host(words[1]):
                servers.append(words[1])
            continue
        if words[:1] in (["search"], ["domain"]) and config.dns_search:
            continue
        kept.append(line)
    if config.dns:
        servers = list(config.dns)
    elif not servers and config.network != "host":
        servers = list(DEFAULT_NAMESERVERS)
    lines = [*kept, *(f"nameserver {server}" for server in servers)]
    if config.dns_search:
        lines.append("search " + " ".join(config.dns_search))
    return ("\n".join(lines) + "\n").encode() if lines else b""


def _reachable_off_host(server: str) -> bool:
    # A loopback nameserver is the host's own; an IPv6 one has no route from the bridge.
    return not (server.startswith("127.") or ":" in server)


def write_files(directory: Path, config: EtcConfig) -> None:
    """Write the three files into the record ``directory`` (each atomically)."""
    host_resolv = _read_host(HOST_RESOLV_CONF)
    host_hosts = _read_host(HOST_HOSTS) if config.network == "host" else b""
    contents = {"hostname": hostname_file(config), "hosts": hosts_file(config, host_hosts),
                "resolv.conf": resolv_conf(config, host_resolv)}
    for name, data in contents.items():
        # 0644 as docker's: the container's non-root users read them.
        write_bytes_atomic(directory / name, data, mode=0o644, durable=False)


def _read_host(path: str) -> bytes:
    try:
        return read_regular(path, _HOST_FILE_LIMIT)
    except FileNotFoundError:
        return b""
    except OSError as exc:
        raise PydockError(f"cannot read the host's {path}: {exc.strerror}") from None


def mounts(directory: Path) -> tuple[tuple[str, str], ...]:
    """(source, path in the container) of each file the record ``directory`` holds (a
    container made before pydock wrote them has none)."""
    return tuple((str(directory / name), path) for path, name in FILES.items()
                 if os.path.exists(directory / name))


def mount_etc_files(root_fd: int, files: Sequence[tuple[str, str]]) -> None:
    """In the container's first process, before pivot_root: bind mount each file over its
    path inside the root ``root_fd``. Before the volumes: a ``-v`` onto one of these paths
    then covers pydock's file, as a volume there does in docker."""
    for source, destination in files:
        with mounting(destination):
            tree = open_tree_clone(source)
            try:
                mount_setattr_recursive(tree, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID
                                        | MOUNT_ATTR_NOEXEC)
                attach_in_root(tree, root_fd, destination, directory=False)
            finally:
                os.close(tree)
