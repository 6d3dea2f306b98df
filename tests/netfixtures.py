"""A bridge network private to one test, and the check that it leaves nothing behind."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import struct
import subprocess
from pathlib import Path
from typing import NamedTuple

VETH_PREFIX = "pd"  # pydock.core.containers.network.VETH_PREFIX


class PrivateBridge(NamedTuple):
    bridge: str
    table: str
    subnet: str

    @classmethod
    def make(cls) -> PrivateBridge:
        tag = os.urandom(4).hex()
        return cls(f"pdt{tag}", f"pydock_t{tag}", free_subnet())

    def config(self) -> dict[str, str]:
        return {"default": "bridge", "bridge": self.bridge, "subnet": self.subnet,
                "table": self.table}

    @property
    def gateway(self) -> str:
        return str(next(ipaddress.IPv4Network(self.subnet).hosts()))


def routed_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes (/proc/net/route: little-endian hex)."""
    networks = []
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        dest, mask = (socket.inet_ntoa(struct.pack("<I", int(f, 16))) for f in (fields[1],
                                                                                 fields[7]))
        networks.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    return networks


def free_subnet() -> str:
    """A /24 of 10.200.0.0/13 that no route of the host's covers or overlaps."""
    routed = [n for n in routed_networks() if n.prefixlen > 0]
    for _ in range(200):
        raw = int.from_bytes(os.urandom(2))
        candidate = ipaddress.IPv4Network(f"10.{200 + raw % 8}.{raw >> 8}.0/24")
        if not any(candidate.overlaps(n) for n in routed):
            return str(candidate)
    raise RuntimeError("no free /24 for a test bridge")


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def table_exists(table: str) -> bool:
    return subprocess.run(["nft", "list", "table", "ip", table], capture_output=True,
                          check=False).returncode == 0


def new_masterless_veths(before: set[str]) -> list[str]:
    """``pd*`` veths made since ``before`` that no bridge holds: a test's, once its bridge
    is gone (a real pydock's veths are ports of its own bridge)."""
    return sorted(name for name in set(os.listdir("/sys/class/net")) - before
                  if name.startswith(VETH_PREFIX) and not name.startswith("pdt")
                  and not os.path.exists(f"/sys/class/net/{name}/master"))


def network_leftovers(config: dict[str, str], before: set[str]) -> list[str]:
    leaked = [f"veth {name}" for name in new_masterless_veths(before)]
    if link_exists(config["bridge"]):
        leaked.append(f"bridge {config['bridge']}")
    if table_exists(config["table"]):
        leaked.append(f"table {config['table']}")
    return leaked


def remove_network_leftovers(leaked: list[str]) -> None:
    for item in leaked:
        kind, name = item.split(" ", 1)
        with contextlib.suppress(subprocess.CalledProcessError):
            if kind == "table":
                subprocess.run(["nft", "delete", "table", "ip", name], check=True,
                               capture_output=True)
            else:
                subprocess.run(["ip", "link", "del", name], check=True, capture_output=True)
