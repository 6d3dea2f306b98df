"""The bridge and a container's link to it, through netlink (pyroute2).

Imported only on the way to a container on the bridge network: pyroute2 takes well over a
hundred milliseconds to import, which ``--network none`` and ``host`` never pay.

A container on the bridge gets, before its first process exists:

1. a network namespace of its own, made by this process (unshare, then back to its own)
   and held by a descriptor: the container's process enters it (setns) instead of making
   one, so the network is complete before the command runs;
2. a veth pair: one end on the host (``pd`` and 12 hex digits of the container id:
   :func:`pydock.core.containers.network.veth_name`), a port of the bridge, and ``eth0``
   made directly inside that namespace, with a MAC derived from the address as docker's
   (``02:42:`` and the four bytes of the IPv4 address);
3. inside: ``lo`` and ``eth0`` up, the address, the default route via the bridge.

What a crash leaves: the namespace lives only as long as a descriptor or a process holds
it, and when it goes the kernel deletes its veth, and so the host's end. A veth whose
namespace still lives (a container still running) is deleted by ``rm`` by its name, which
follows from the container id alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

from pyroute2 import IPRoute  # type: ignore[import-untyped,unused-ignore]
from pyroute2.netlink.exceptions import NetlinkError  # type: ignore[import-untyped]

from pydock.core.errors import PydockError
from pydock.core.syscalls import CLONE_NEWNET, setns, unshare


def mac_address(address: str) -> str:
    return "02:42:" + ":".join(f"{int(part):02x}" for part in address.split("."))


@contextlib.contextmanager
def _netlink() -> Iterator[IPRoute]:
    ipr = IPRoute()
    try:
        yield ipr
    finally:
        ipr.close()


def ensure_bridge(name: str, gateway: str, prefix: int) -> bool:
    """The bridge up with the gateway's address; True if it was made now. The caller holds
    the storage root's network lock."""
    with _netlink() as ipr:
        if ipr.link_lookup(ifname=name):
            return False
        try:
            ipr.link("add", ifname=name, kind="bridge")
        except NetlinkError as exc:
            raise PydockError(f"cannot create the bridge {name}: {exc}") from None
        index = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=index, address=gateway, prefixlen=prefix)
        ipr.link("set", index=index, state="up")
    # Published ports on 127.0.0.1 are DNAT'ed to the bridge (pydock.core.runtime.nft).
    _sysctl(f"net/ipv4/conf/{name}/route_localnet", "1")
    _sysctl("net/ipv4/ip_forward", "1")  # a router, as docker makes the host
    return True


def delete_link(name: str) -> None:
    """Delete a link (a veth's host end, a bridge) if it is there."""
    with _netlink() as ipr:
        indexes = ipr.link_lookup(ifname=name)
        if not indexes:
            return
        try:
            ipr.link("del", index=indexes[0])
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:  # gone meanwhile, with its namespace
                raise PydockError(f"cannot delete {name}: {exc}") from None


def ports_of(bridge: str) -> list[str]:
    """The names of the links that are ports of ``bridge``."""
    with _netlink() as ipr:
        indexes = ipr.link_lookup(ifname=bridge)
        if not indexes:
            return []
        return [str(link.get_attr("IFLA_IFNAME"))
                for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == indexes[0]]


def exists(name: str) -> bool:
    with _netlink() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def new_namespace() -> int:
    """A new network namespace, as a descriptor; this thread stays in its own."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        unshare(CLONE_NEWNET)
        try:
            return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)


def connect(netns: int, veth: str, bridge: str, address: str, prefix: int,
            gateway: str) -> None:
    """The veth pair between ``bridge`` (its end named ``veth``) and the namespace
    ``netns``, and the container's side configured (see the module's docstring)."""
    with _netlink() as ipr:
        master = ipr.link_lookup(ifname=bridge)
        if not master:
            raise PydockError(f"the bridge {bridge} is gone")
        try:
            ipr.link("add", ifname=veth, kind="veth",
                     peer={"ifname": "eth0", "net_ns_fd": netns,
                           "address": mac_address(address)})
        except NetlinkError as exc:
            raise PydockError(f"cannot create the veth pair {veth}: {exc}") from None
        index = ipr.link_lookup(ifname=veth)[0]
        ipr.link("set", index=index, master=master[0], state="up")
    with _inside(netns) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        eth0 = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=eth0, address=address, prefixlen=prefix)
        ipr.link("set", index=eth0, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


@contextlib.contextmanager
def _inside(netns: int) -> Iterator[IPRoute]:
    """A netlink socket of the namespace ``netns``: a socket belongs to the namespace of
    the thread that made it, wherever that thread goes next."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(netns, CLONE_NEWNET)
        try:
            ipr = IPRoute()
        finally:
            setns(own, CLONE_NEWNET)
    finally:
        os.close(own)
    try:
        yield ipr
    finally:
        ipr.close()


def _sysctl(key: str, value: str) -> None:
    path = f"/proc/sys/{key}"
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise PydockError(f"cannot set {key.replace('/', '.')} to {value}: "
                          f"{exc.strerror}") from None
