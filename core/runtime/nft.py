"""The bridge's firewall state: one nftables table of pydock's own, through the ``nft`` CLI.

Nothing outside that table is ever read, changed or flushed: the host's own rules, and
another storage root's table, are not pydock's. The table (family ``ip``) holds:

- ``masquerade``: what leaves the bridge's subnet for anywhere but the bridge goes out
  with the host's address (docker's outbound NAT); a container that reaches another's
  published port through the host's address is masqueraded too (hairpin NAT), or the
  answer would come from an address it did not call;
- two maps for ``-p``, from what the host receives to a container's address and port:
  ``ports_any`` (``PROTO . PORT``, on every local address) and ``ports_ip``
  (``IP . PROTO . PORT``, on one address). A published port is one map element, added and
  deleted by its key, so ``rm`` removes exactly its container's and nothing is found by
  rule handle. Both are consulted in ``prerouting`` (other hosts) and ``output`` (the
  host itself, 127.0.0.1 included);
- 127.0.0.1: a connection to a published port on the host's loopback is DNAT'ed to the
  container, its source masqueraded to the bridge's address; the kernel routes such a
  packet only with ``route_localnet`` on the bridge (set by
  :mod:`pydock.core.runtime.bridge`). docker answers 127.0.0.1 with a userland proxy, a
  process per port; pydock keeps no process that a crash could leave behind. The price of
  ``route_localnet`` is CVE-2020-8558 (kube-proxy): a neighbour on the bridge could reach
  the host's services bound to 127.0.0.1; the ``localnet`` chain drops whatever arrives on
  the bridge addressed to 127.0.0.0/8, before NAT, as Kubernetes' fix does;
- ``forward``: the bridge's traffic out, replies and published ports in, and nothing else
  from outside to a container's address (docker's isolation).

``nft`` reads a script on stdin: one process, and one transaction, per change.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from pydock.core.errors import PydockError

if TYPE_CHECKING:
    import subprocess

INSTALL_HINT = "install nftables (Debian, Ubuntu: apt-get install nftables)"


class Published(NamedTuple):
    """One published port: ``-p [HOST_IP:]HOST_PORT:PORT[/PROTO]`` to a container."""

    proto: str  # "tcp" or "udp"
    host_ip: str  # "" for every address
    host_port: int
    address: str  # the container's
    port: int

    def key(self) -> str:
        return (f"{self.host_ip} . " if self.host_ip else "") + f"{self.proto} . {self.host_port}"

    def map(self) -> str:
        return "ports_ip" if self.host_ip else "ports_any"


def table_script(table: str, bridge: str, subnet: str) -> str:
    """The table, created anew: whatever an older one held goes with it."""
    dnat = ("fib daddr type local dnat ip to meta l4proto . th dport map @ports_any\n"
            "    dnat ip to ip daddr . meta l4proto . th dport map @ports_ip")
    return f"""table ip {table}
delete table ip {table}
table ip {table} {{
  map ports_any {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}
  map ports_ip {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
    {dnat}
  }}
  chain output {{ type nat hook output priority -100; policy accept;
    {dnat}
  }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr {subnet} oifname != "{bridge}" masquerade
    ip saddr 127.0.0.0/8 oifname "{bridge}" masquerade
    oifname "{bridge}" ip saddr {subnet} ct status dnat masquerade
  }}
  chain forward {{ type filter hook forward priority filter; policy accept;
    iifname "{bridge}" accept
    oifname "{bridge}" ct state established,related accept
    oifname "{bridge}" ct status dnat accept
    oifname "{bridge}" drop
  }}
  chain localnet {{ type filter hook prerouting priority raw; policy accept;
    iifname "{bridge}" ip daddr 127.0.0.0/8 drop
  }}
}}
"""


def ensure_table(table: str, bridge: str, subnet: str) -> None:
    _run(table_script(table, bridge, subnet))


def delete_table(table: str) -> None:
    # "table" first: deleting a table that is not there is an error, adding one is not.
    _run(f"table ip {table}\ndelete table ip {table}\n")


def publish(table: str, ports: Iterable[Published]) -> None:
    lines = [f"add element ip {table} {port.map()} {{ {port.key()} : "
             f"{port.address} . {port.port} }}" for port in ports]
    if lines:
        _run("\n".join(lines) + "\n")


def unpublish(table: str, ports: Iterable[Published]) -> None:
    """Delete the elements of ``ports`` that are there (each alone: one already gone, or
    the table itself, must not keep the others)."""
    for port in ports:
        try:
            _run(f"delete element ip {table} {port.map()} {{ {port.key()} }}\n")
        except PydockError:
            continue


def table_exists(table: str) -> bool:
    return _nft("list", "table", "ip", table).returncode == 0


def _run(script: str) -> None:
    result = _nft("-f", "-", script=script)
    if result.returncode != 0:
        message = " ".join(result.stderr.split())[:300]
        raise PydockError(f"nft failed: {message}")


def _nft(*args: str, script: str = "") -> subprocess.CompletedProcess[str]:
    # Imported here: a run on the bridge without -p never starts nft.
    import shutil
    import subprocess

    nft = shutil.which("nft")
    if nft is None:
        raise PydockError(f"the bridge network needs nft, which is not installed: {INSTALL_HINT}")
    return subprocess.run([nft, *args], input=script, capture_output=True, text=True,
                          timeout=30, check=False)
