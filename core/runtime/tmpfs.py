"""``pydock run --tmpfs DST[:OPTIONS]``: a fresh tmpfs at DST, docker's way.

A tmpfs is memory the container may write to, even on a ``--read-only`` root: the place
for /run, /tmp or a cache. Docker mounts it ``noexec,nosuid,nodev`` unless told
otherwise, and so does pydock; OPTIONS (comma-separated) are docker's and the kernel's:

- flags: ``rw``/``ro``, ``exec``/``noexec``, ``suid``/``nosuid``, ``nodev``,
  ``noatime``/``relatime``/``strictatime`` (a later one wins over an earlier one, and
  every given one over the defaults);
- data: ``size=N[k|m|g]`` or ``size=N%`` (of RAM), ``nr_inodes=N[k|m|g]``, ``mode=OCTAL``,
  ``uid=N``, ``gid=N``.

``dev`` is refused, unlike docker: pydock's device allowlist is nodev on every mount the
container can hold a node on (:mod:`pydock.core.runtime.devices`), so a tmpfs without it
would let root in the container open any node it makes with CAP_MKNOD (a host disk).

The mount is built detached (fsopen, fsconfig, fsmount, with its flags set from the
start) and attached at DST resolved inside the container's root, as a volume is
(:func:`pydock.core.runtime.volumes.attach_in_root`): a symlink in the image cannot
send it onto the host.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

from pydock.core.errors import PydockError
from pydock.core.syscalls import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    new_mount,
)

FORMAT = "DST[:OPTIONS]"
DEFAULTS = ("noexec", "nosuid", "nodev")
MOUNT_ATTR_NOATIME, MOUNT_ATTR_STRICTATIME = 0x10, 0x20
# flag -> (the attribute it sets, the flags it cancels)
_FLAGS: dict[str, tuple[int, tuple[str, ...]]] = {
    "rw": (0, ("ro",)), "ro": (MOUNT_ATTR_RDONLY, ("rw",)),
    "exec": (0, ("noexec",)), "noexec": (MOUNT_ATTR_NOEXEC, ("exec",)),
    "suid": (0, ("nosuid",)), "nosuid": (MOUNT_ATTR_NOSUID, ("suid",)),
    "nodev": (MOUNT_ATTR_NODEV, ()),
    "noatime": (MOUNT_ATTR_NOATIME, ("relatime", "strictatime")),
    "relatime": (0, ("noatime", "strictatime")),
    "strictatime": (MOUNT_ATTR_STRICTATIME, ("noatime", "relatime")),
}
_DATA = {"size": r"[0-9]+[kmgKMG]?|[0-9]{1,3}%", "nr_inodes": r"[0-9]+[kmgKMG]?",
         "mode": r"[0-7]{1,4}", "uid": r"[0-9]{1,10}", "gid": r"[0-9]{1,10}"}
# Where a tmpfs would hide what the runtime put there, or the kernel's interfaces.
_FORBIDDEN = ("/proc", "/sys", "/dev")


class Tmpfs(NamedTuple):
    """One ``--tmpfs``, checked: DST normalised, the options merged with the defaults."""

    destination: str
    options: tuple[str, ...]  # flags, then key=value data, in a stable order
    given: str = ""  # the options as given (docker's HostConfig.Tmpfs shows them)

    def to_mount(self) -> dict[str, Any]:
        """As an entry of an OCI spec's ``mounts``."""
        return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                "options": list(self.options)}

    @classmethod
    def from_mount(cls, mount: dict[str, Any]) -> Tmpfs:
        options = tuple(mount["options"])
        return cls(mount["destination"], options, ",".join(
            o for o in options if o not in DEFAULTS))

    def attributes(self) -> int:
        attr = 0
        for option in self.options:
            if option in _FLAGS:
                attr |= _FLAGS[option][0]
        return attr

    def data(self) -> list[tuple[str, str]]:
        return [(key, value) for key, _, value in
                (option.partition("=") for option in self.options if "=" in option)]


def parse_tmpfs(specs: Sequence[str]) -> tuple[Tmpfs, ...]:
    """Check every ``--tmpfs``; PydockError for the first that is wrong, before anything
    exists."""
    found = [_parse(spec) for spec in specs]
    seen: set[str] = set()
    for tmpfs in found:
        if tmpfs.destination in seen:
            raise PydockError(f"invalid --tmpfs {tmpfs.destination!r}: duplicate mount point")
        seen.add(tmpfs.destination)
    return tuple(found)


def _parse(spec: str) -> Tmpfs:
    def invalid(reason: str) -> PydockError:
        return PydockError(f"invalid --tmpfs {spec!r}: {reason}")

    destination, _, given = spec.partition(":")
    if not destination.startswith("/"):
        raise invalid(f"DST must be an absolute path (expected {FORMAT})")
    destination = "/" + posixpath.normpath(destination).lstrip("/")
    if destination == "/":
        raise invalid("DST must not be / (the container's root)")
    for top in _FORBIDDEN:
        if destination == top or destination.startswith(top + "/"):
            if top == "/dev" and destination.startswith(("/dev/shm/", "/dev/mqueue/")):
                continue
            raise invalid(f"DST {destination} is under {top}, which pydock sets up itself")
    if given and not all(given.split(",")):
        raise invalid("an empty option (two commas, or one at an end)")
    flags = list(DEFAULTS)
    data: dict[str, str] = {}
    for option in filter(None, given.split(",")):
        key, sep, value = option.partition("=")
        if sep:
            if key not in _DATA:
                raise invalid(f"unknown option {key!r} (expected one of "
                              f"{', '.join(_DATA)}=VALUE)")
            if not re.fullmatch(_DATA[key], value):
                raise invalid(f"bad value {value!r} for {key}")
            data[key] = value
        elif option == "dev":
            raise invalid("dev is not allowed: device nodes would open there, past the "
                          "device allowlist (use --device to give a device)")
        elif option in _FLAGS:
            flags = [flag for flag in flags if flag not in _FLAGS[option][1]
                     and flag != option] + [option]
        else:
            raise invalid(f"unknown option {option!r}")
    return Tmpfs(destination, (*flags, *(f"{k}={v}" for k, v in data.items())), given)


def mount_tmpfs(root_fd: int, tmpfs: Tmpfs) -> None:
    """Mount ``tmpfs`` at its DST inside the root ``root_fd``."""
    from pydock.core.runtime.volumes import attach_in_root, mounting

    with mounting(f"tmpfs at {tmpfs.destination}"):
        tree = new_mount("tmpfs", list(tmpfs.data()), tmpfs.attributes())
        try:
            attach_in_root(tree, root_fd, tmpfs.destination, True)
        finally:
            os.close(tree)
