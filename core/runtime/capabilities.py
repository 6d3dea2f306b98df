"""Docker's default capability set, ``--cap-add`` and ``--cap-drop``, and dropping
everything else before exec.

Root in a container keeps only what docker gives it: enough to chown, bind low ports,
mknod and switch users inside its own root, not enough to mount, load modules, read
files by handle (CAP_DAC_READ_SEARCH is what the "shocker" escape used to read the
host's /etc/shadow through a bind-mounted root) or undo --read-only. ``--cap-add`` and
``--cap-drop`` change that set the way docker's do (:func:`effective_add_drop` is what
docker's CLI records, :func:`resolve` what its daemon makes of it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from pydock.core.errors import PydockError
from pydock.core.syscalls import (
    PR_CAP_AMBIENT,
    PR_CAP_AMBIENT_CLEAR_ALL,
    PR_CAPBSET_DROP,
    capset,
    prctl,
)

# Capability numbers from linux/capability.h.
CAPABILITIES = {
    "CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2, "FOWNER": 3, "FSETID": 4,
    "KILL": 5, "SETGID": 6, "SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
    "NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12, "NET_RAW": 13,
    "IPC_LOCK": 14, "IPC_OWNER": 15, "SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
    "SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21, "SYS_BOOT": 22, "SYS_NICE": 23,
    "SYS_RESOURCE": 24, "SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27, "LEASE": 28,
    "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30, "SETFCAP": 31, "MAC_OVERRIDE": 32,
    "MAC_ADMIN": 33, "SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36, "AUDIT_READ": 37,
    "PERFMON": 38, "BPF": 39, "CHECKPOINT_RESTORE": 40,
}
DOCKER_DEFAULT = ("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID",
                  "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL",
                  "AUDIT_WRITE")
# --cap-add ALL / --cap-drop ALL: every capability pydock holds (resolve).
ALL = "ALL"


def normalize(names: Sequence[str]) -> list[str]:
    """``--cap-add``/``--cap-drop`` values as docker records them: upper case, with the
    ``CAP_`` prefix (``ALL`` stays ``ALL``), each once, sorted. PydockError for a name
    Linux does not have."""
    found = set()
    for name in names:
        capability = name.strip().upper()
        if capability != ALL:
            capability = "CAP_" + capability.removeprefix("CAP_")
            if capability.removeprefix("CAP_") not in CAPABILITIES:
                raise PydockError(f"unknown capability: {name!r} (expected a name such as "
                                  "NET_ADMIN or CAP_NET_ADMIN, or ALL)")
        found.add(capability)
    return sorted(found)


def effective_add_drop(add: Sequence[str], drop: Sequence[str]) -> tuple[list[str], list[str]]:
    """The lists a container records, by docker's rules: ALL makes the other names in its
    list redundant, and a capability both added and dropped is added."""
    adds, drops = normalize(add), normalize(drop)
    if ALL in adds:
        adds = [ALL]
    if ALL in drops:
        drops = [ALL]
    return adds, [capability for capability in drops if capability not in adds]


def resolve(cap_add: Sequence[str], cap_drop: Sequence[str]) -> tuple[str, ...]:
    """The capabilities (names without ``CAP_``) of a container recorded with these lists,
    by docker's rules: ``--cap-add ALL`` is every capability but those dropped; ``--cap-drop
    ALL`` is only those added; otherwise docker's default set, less the dropped, plus the
    added. ALL is what pydock holds itself: a container can get no more.
    PydockError for a capability pydock does not hold."""
    if not cap_add and not cap_drop:  # the usual case costs no read of /proc
        return DOCKER_DEFAULT
    adds = [name.removeprefix("CAP_") for name in cap_add]
    drops = [name.removeprefix("CAP_") for name in cap_drop]
    own = held()
    if ALL in adds:
        kept = [name for name, number in CAPABILITIES.items()
                if own & (1 << number) and name not in drops]
    elif ALL in drops:
        kept = adds
    else:
        kept = [name for name in DOCKER_DEFAULT if name not in drops] + adds
    for name in kept:
        if not own & (1 << CAPABILITIES[name]):
            raise PydockError(f"capability CAP_{name} is not available: the kernel lacks it, "
                              "or pydock was started without it")
    return tuple(dict.fromkeys(kept))


def mask(names: Sequence[str]) -> int:
    return sum(1 << CAPABILITIES[name] for name in names)


def held() -> int:
    """The capabilities this process holds (its permitted set), as a mask."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("CapPrm:"))


def last_capability() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


# What switching to the container's user takes: setgroups and setgid, setuid.
_USER_SWITCH = ("SETGID", "SETUID")


def limit_before_user_switch(names: tuple[str, ...]) -> None:
    """Keep only ``names`` in the bounding set, so that no exec can regain the rest, and as
    this process's effective and permitted sets, with what the switch to the container's
    user takes (even if the container is not to keep it: ``--cap-drop ALL``); inheritable
    and ambient become empty. Then switch user, then :func:`limit_after_user_switch`.

    Call while still root with every capability: dropping from the bounding set needs
    CAP_SETPCAP. All that runs from here on runs with the container's privileges, or
    barely more.
    """
    keep = mask(names)
    for capability in range(last_capability() + 1):
        if not keep & (1 << capability):
            prctl(PR_CAPBSET_DROP, capability)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    switch = keep | mask(_USER_SWITCH)
    capset(effective=switch, permitted=switch, inheritable=0)


def limit_after_user_switch(names: tuple[str, ...]) -> None:
    """Once the user is switched: root keeps exactly ``names``, any other user nothing (as
    in docker; its setuid cleared them already, unless securebits say otherwise)."""
    keep = mask(names) if os.geteuid() == 0 else 0
    capset(effective=keep, permitted=keep, inheritable=0)
