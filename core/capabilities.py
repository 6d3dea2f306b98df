"""Docker's default capability set, and dropping everything else before exec.

Root in a container keeps only what docker gives it: enough to chown, bind low ports,
mknod and switch users inside its own root, not enough to mount, load modules, read
files by handle (CAP_DAC_READ_SEARCH is what the "shocker" escape used to read the
host's /etc/shadow through a bind-mounted root) or undo --read-only.
"""

from __future__ import annotations

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


def mask(names: tuple[str, ...]) -> int:
    return sum(1 << CAPABILITIES[name] for name in names)


def last_capability() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())


def limit_to(names: tuple[str, ...]) -> None:
    """Keep only ``names``: in the bounding set (so no exec can regain the rest), and as
    this process's effective and permitted sets; inheritable and ambient become empty.

    Call while still root and before switching user: dropping from the bounding set needs
    CAP_SETPCAP, and a later setuid to a non-root user clears what is left, as it should.
    """
    keep = mask(names)
    for capability in range(last_capability() + 1):
        if not keep & (1 << capability):
            prctl(PR_CAPBSET_DROP, capability)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    capset(effective=keep, permitted=keep, inheritable=0)
