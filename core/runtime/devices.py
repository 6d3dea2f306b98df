"""Device nodes: which ones a container may open (docker's allowlist), and ``--device``.

The threat: a device node is the device itself to whoever opens it. An image's layers
keep the nodes they ship (a ``b 7 0`` of mode 0666 is the host's ``/dev/loop0``, a
``b 8 0`` the host's first disk), and root in the container, which has CAP_MKNOD by
docker's defaults, makes any node it likes. Neither capabilities, ``-u``, a read-only
root nor no-new-privileges stop an open(2) of such a node: only the mount it sits on, or
the devices cgroup, does. Docker relies on the latter (runc writes the rules of
:data:`DEFAULT_RULES` to cgroup v1's devices controller, or loads them as a BPF device
program on cgroup v2). pydock holds the line with two controls:

1. ``nodev`` on every mount where the container can hold a node: the root (whatever
   the driver, its submounts included), every volume, ``/dev`` (a tmpfs),
   ``/dev/shm`` and ``/dev/mqueue``. The kernel refuses to open any device node on a
   nodev mount (EACCES), to everyone: root in the container, and the host's users too,
   who would otherwise reach an image's world-writable node through
   ``/proc/PID/root/...`` even where the host's own ``/dev`` refuses them. A node the
   container may open (:data:`DEFAULT_DEVICES`, ``--device``) is the host's own node,
   bind mounted (:func:`mount_devices`): a mount of its own, without nodev, and
   read-only, so that the container cannot chmod or chown the host's node (a read-only
   mount refuses metadata changes; reads and writes of a device it does not refuse).
   This holds on cgroup v1 and v2 alike and needs nothing from the cgroup hierarchy.
2. Where the host has cgroup v1's devices controller, its allowlist as well
   (:mod:`pydock.core.runtime.cgroups` writes :func:`cgroup_rules`, deny-all first,
   before the container's first process joins): it also covers a node on a mount the
   container makes itself (a tmpfs mounted with ``--cap-add SYS_ADMIN``).

Why not a BPF device program on cgroup v2, as runc loads: it would mean assembling eBPF
in Python and attaching it to the container's cgroup, for a rule set that, once every
mount the container can write to is nodev, leaves nothing more to refuse, except on
mounts made with CAP_SYS_ADMIN, which docker does not grant by default either. A mount
made in a nested user namespace is nodev by the kernel's own rule, whatever its flags.
What nodev cannot do is narrow a ``--device``'s permissions: the node opens as its mode
allows. On a host without the v1 devices controller, :func:`parse_device` therefore
refuses PERMS without ``r`` or ``w`` (a limit that silently does nothing is worse than
none); without ``m`` it is accepted, since a node the container makes never opens.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydock.core.errors import PydockError
from pydock.core.runtime.volumes import KERNEL_DIRS, attach_in_root
from pydock.core.syscalls import (
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    mount_setattr_recursive,
    open_tree_clone,
)

# The character devices every container gets (docker's defaults): name -> (major, minor).
DEFAULT_DEVICES = {"null": (1, 3), "zero": (1, 5), "full": (1, 7), "random": (1, 8),
                   "urandom": (1, 9), "tty": (5, 0)}
# Docker's device cgroup rules (runc's AllowedDevices, after moby's deny-all): the nodes
# above, /dev/console (5:1), /dev/ptmx (5:2), the pseudo-terminals (136:*) and /dev/net/tun
# (10:200) may be opened; any node may be made (mknod), none other opened. (type, major,
# minor, access); None is the wildcard.
DEFAULT_RULES: tuple[tuple[str, int | None, int | None, str], ...] = (
    ("c", None, None, "m"), ("b", None, None, "m"),
    *(("c", major, minor, "rwm") for major, minor in DEFAULT_DEVICES.values()),
    ("c", 5, 1, "rwm"), ("c", 5, 2, "rwm"), ("c", 136, None, "rwm"), ("c", 10, 200, "rwm"))
ALL_PERMISSIONS = "rwm"

# docker's validDeviceMode: r, w and m, each at most once. Compiled (and cached) by re on
# first use: most runs give no --device.
_PERMISSIONS = r"(?!.*(.).*\1)[rwm]{1,3}"


class Device(NamedTuple):
    """A device node the container may open: the host's node ``source``, bind mounted
    at ``path`` inside the container (an OCI ``linux.devices`` entry)."""

    path: str  # absolute, in the container: "/dev/null"
    source: str  # the host's node: "/dev/null"
    type: str  # "c" or "b"
    major: int
    minor: int

    def to_spec(self, mode: int = 0o666, uid: int = 0, gid: int = 0) -> dict[str, Any]:
        """The OCI ``linux.devices`` entry, with pydock's ``hostPath``."""
        return {"path": self.path, "type": self.type, "major": self.major,
                "minor": self.minor, "fileMode": mode, "uid": uid, "gid": gid,
                "hostPath": self.source}

    @classmethod
    def from_spec(cls, entry: dict[str, Any]) -> Device:
        # A record written before hostPath existed named default devices only, whose
        # host node has the same path.
        return cls(entry["path"], entry.get("hostPath", entry["path"]), entry["type"],
                   entry["major"], entry["minor"])


def default_devices() -> list[Device]:
    return [Device(f"/dev/{name}", f"/dev/{name}", "c", major, minor)
            for name, (major, minor) in DEFAULT_DEVICES.items()]


def parse_device(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--device HOST[:CONTAINER][:PERMS]`` (docker's syntax; CONTAINER defaults to HOST,
    PERMS to rwm): its OCI ``linux.devices`` entry and ``linux.resources.devices`` rule.
    :class:`PydockError` for anything else, for a HOST that is not a device node, and for
    PERMS this host cannot enforce (see the module's docstring)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0]:
        raise PydockError(f"invalid device specification {text!r}: expected "
                          "HOST[:CONTAINER][:PERMS]")
    source, destination, permissions = parts[0], parts[0], ALL_PERMISSIONS
    if len(parts) == 3:
        destination, permissions = parts[1], parts[2]
    elif len(parts) == 2:
        if re.fullmatch(_PERMISSIONS, parts[1]):
            permissions = parts[1]
        else:
            destination = parts[1]
    if not re.fullmatch(_PERMISSIONS, permissions):
        raise PydockError(f"invalid device mode {permissions!r} in --device {text}: "
                          "expected r, w and/or m")
    for path in (source, destination):
        if not path.startswith("/"):
            raise PydockError(f"--device {text}: {path} is not an absolute path")
    destination = "/" + os.path.normpath(destination).lstrip("/")
    for top in KERNEL_DIRS:
        if destination == top or destination.startswith(top + "/"):
            raise PydockError(f"--device {text}: {destination} is under {top}, the "
                              "kernel's interface")
    try:
        st = os.stat(source)
    except OSError as exc:
        raise PydockError(f"--device {text}: {source}: {exc.strerror}") from None
    kind = _node_type(st.st_mode)
    if not kind:
        raise PydockError(f"--device {text}: {source} is not a device node")
    if not {"r", "w"} <= set(permissions) and not _has_devices_controller():
        raise PydockError(f"--device {text}: this host has no cgroup v1 devices controller "
                          f"to hold the device to {permissions!r} (only rw or rwm)")
    device = Device(destination, source, kind, os.major(st.st_rdev), os.minor(st.st_rdev))
    rule = {"allow": True, "type": device.type, "major": device.major,
            "minor": device.minor, "access": permissions}
    return device.to_spec(stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid), rule


def _node_type(mode: int) -> str:
    """"c" for a character device, "b" for a block device, "" for anything else."""
    return "c" if stat.S_ISCHR(mode) else "b" if stat.S_ISBLK(mode) else ""


def _has_devices_controller() -> bool:
    from pydock.core.runtime.cgroups import has_v1_controller

    return has_v1_controller("devices")


def resource_rules() -> list[dict[str, Any]]:
    """Docker's allowlist as the OCI ``linux.resources.devices``: deny all, then allow."""
    rules: list[dict[str, Any]] = [{"allow": False, "access": ALL_PERMISSIONS}]
    for type_, major, minor, access in DEFAULT_RULES:
        rule: dict[str, Any] = {"allow": True, "type": type_, "access": access}
        if major is not None:
            rule["major"] = major
        if minor is not None:
            rule["minor"] = minor
        rules.append(rule)
    return rules


def cgroup_rules(resources: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The OCI ``linux.resources.devices`` as cgroup v1 writes, in order: (file, rule),
    ``devices.deny``/``devices.allow`` and ``TYPE MAJOR:MINOR ACCESS`` (``*`` a wildcard)."""
    writes = []
    for rule in resources:
        if "type" not in rule and rule["access"] == ALL_PERMISSIONS:
            line = "a"  # every device, every access: the deny-all that starts the list
        else:
            major, minor = rule.get("major", "*"), rule.get("minor", "*")
            line = f"{rule.get('type', 'a')} {major}:{minor} {rule['access']}"
        writes.append(("devices.allow" if rule["allow"] else "devices.deny", line))
    return writes


def mount_devices(root_fd: int, devices: Sequence[Device]) -> None:
    """Bind mount each device's host node at its path in the root ``root_fd``, read-only.

    Each mount is built detached and made read-only before it is attached, so the
    container never sees a moment where it could chmod the host's node. The host's node
    must still be the device the spec names: a node replaced since ``run`` checked it
    is refused, not passed on.
    """
    for device in devices:
        try:
            tree = open_tree_clone(device.source)
        except OSError as exc:
            raise PydockError(f"device {device.source}: {exc.strerror}") from None
        try:
            st = os.fstat(tree)
            if (_node_type(st.st_mode), os.major(st.st_rdev), os.minor(st.st_rdev)) != (
                    device.type, device.major, device.minor):
                raise PydockError(f"device {device.source} on the host is no longer "
                                  f"{device.type} {device.major}:{device.minor}")
            mount_setattr_recursive(tree, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
                                    | MOUNT_ATTR_NOEXEC)
            attach_in_root(tree, root_fd, device.path, directory=False)
        finally:
            os.close(tree)
