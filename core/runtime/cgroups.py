"""Every container's cgroup: resource limits (``run -m``, ``--cpus``, ``--pids-limit``)
and the device allowlist, with cgroups v1 or v2, and the root of its cgroup namespace.

Every container gets a cgroup of its own, named after its id, with or without limits,
in every cgroup hierarchy mounted on the host. Its first process joins it and only then
unshares its cgroup namespace (:mod:`pydock.core.runtime.spawn`), which roots each
hierarchy at the container's own cgroup: ``/proc/self/cgroup`` says ``/``, and a cgroup
file system mounted inside (with CAP_SYS_ADMIN, or in a nested user namespace) shows
the container's subtree only. Without it, a container that unshares a user and a
cgroup namespace mounts the host's cgroup2 hierarchy, writes ``cgroup.kill`` of a host
cgroup (killing processes outside its PID namespace), makes cgroups of its own anywhere
and reads other tenants'. Why every hierarchy, not only those with a controller pydock
sets: the namespace roots each hierarchy at the process's cgroup *in it*, so one left at
a hierarchy's root would show the container that whole hierarchy: the controller-less
v2 ``unified`` hierarchy of a hybrid host (the one with ``cgroup.kill``), ``name=systemd``
(every service's cgroup) and every v1 controller alike. A cgroup's life:

1. :func:`parse_limits` turns the flags into :class:`Limits`, refusing what docker
   refuses and what this host cannot enforce, before any record exists.
2. :func:`create` makes the cgroup, writes the limits and the device rules and opens
   its ``cgroup.procs`` files, in the runtime, before the container's first process is
   forked.
3. :meth:`Cgroup.join`, in that forked process and before anything else it does, moves
   it into the cgroup; :meth:`Cgroup.close` drops the runtime's copies of the files.
4. :meth:`Cgroup.oom_killed`, once the container has exited, says whether the kernel's
   OOM killer struck (``inspect``'s ``State.OOMKilled``).
5. :meth:`Cgroup.remove` deletes it; :func:`remove` does the same from the container id
   alone and is idempotent, so ``rm`` and ``prune`` clean up after a runtime that crashed.

Where the cgroup lives: ``<hierarchy>/pydock/<root key>-<container id>``, below the root
of every hierarchy, where ``<root key>`` is the
first 12 hex digits of the SHA-256 of the storage root's path (:func:`cgroup_name` says
why), and not below the cgroup of the process that runs pydock, because

- the path then follows from the storage root and the container id alone: ``rm`` run
  from another shell (or a crashed run's cleanup) finds it whatever cgroup it runs in
  itself; the caller's cgroup is arbitrary (a login session, a CI job, a sandbox's nested
  memory cgroup);
- cgroup v2 lets a cgroup hand controllers to its children only while it has no
  processes of its own (the "no internal processes" rule): below the cgroup of the
  running CLI, enabling ``memory`` for the container's cgroup would fail with EBUSY,
  whereas ``pydock/`` never holds a process;
- docker's cgroupfs driver (``/docker/<id>``) and podman's (``libpod_parent``) do the same.

The price, as with docker: what a container uses of a limited resource is no longer
charged to the caller's cgroup.

Which version: each controller is used where the kernel has it: in the cgroup v1
hierarchy it is mounted with, else in the cgroup v2 hierarchy if that lists it in
``cgroup.controllers`` (a controller is active in one hierarchy at a time, so the two
never compete). A hybrid host (v1 controllers, plus an empty v2 ``unified`` mount) thus
uses v1; a pure v2 host uses v2.

Swap: docker lets a container swap as much again as its memory limit by default. pydock
allows no swap, so that ``-m`` is what the container gets: memory+swap is set to the
memory limit (v1 ``memory.memsw.limit_in_bytes``) or swap to 0 (v2 ``memory.swap.max``).
A kernel without swap accounting has neither file, and then swap is not limited.

Devices (see :mod:`pydock.core.runtime.devices`): where cgroup v1 has the devices
controller, the container's cgroup gets docker's allowlist, deny-all first, before the
container's first process joins it. cgroup v2 has no such controller.

cpuset (v1): a new cpuset cgroup has no CPUs and no memory nodes, and a process cannot
join it (ENOSPC). ``pydock/`` takes its parent's and sets ``cgroup.clone_children``, so
that every container's cgroup starts with them: the container may use every CPU, as
without pydock.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydock.core.errors import PydockError
from pydock.core.ids import is_container_id

PARENT = "pydock"  # the directory below each hierarchy's root that holds containers' cgroups

MIN_MEMORY = 6 * 1024 * 1024  # docker's minimum: less cannot even start a container runtime
CPU_PERIOD_US = 100_000  # the CFS period docker uses; the quota is cpus x period
NANO = 10**9  # docker counts CPUs in billionths (HostConfig.NanoCpus)
MIN_NANO_CPUS = NANO // 100  # 0.01 CPU: a 1 ms quota, the kernel's smallest
PIDS_MAX = 4 * 1024 * 1024  # PID_MAX_LIMIT: pids.max refuses more
REMOVE_TIMEOUT = 5.0  # seconds for the last processes of a dead container to leave

# docker's size syntax (go-units RAMInBytes): 512, 512b, 64k, 1.5g, 2GiB ... in powers of 1024.
# Compiled (and cached) by re on first use: every run imports this module, few give limits.
_SIZE = r"(?ai)(\d+)(?:\.(\d+))? ?(?:([kmgtp])i?)?b?"
_SIZE_UNITS = "kmgtp"
_CPUS = r"(?a)(\d*)(?:\.(\d*))?"
_PIDS = r"(?a)[+-]?\d+"


class Limits(NamedTuple):
    """A container's limits, in docker's units; 0 is "no limit" for each.

    A named tuple, not a dataclass: every ``run`` imports this module, and the dataclasses
    module costs a millisecond of start-up.
    """

    memory: int = 0  # bytes (HostConfig.Memory)
    nano_cpus: int = 0  # CPUs x 1e9 (HostConfig.NanoCpus)
    pids: int = 0  # tasks, threads included (HostConfig.PidsLimit)

    def __bool__(self) -> bool:
        return bool(self.memory or self.nano_cpus or self.pids)

    def controllers(self) -> list[str]:
        """The cgroup controllers these limits need."""
        needed = {"memory": self.memory, "cpu": self.nano_cpus, "pids": self.pids}
        return [controller for controller, limit in needed.items() if limit]

    def to_resources(self) -> dict[str, Any]:
        """The limits as the OCI runtime spec's ``linux.resources``: what a container's
        spec stores and :meth:`from_resources` reads back."""
        resources: dict[str, Any] = {}
        if self.memory:
            # memory+swap in the OCI spec: equal to the limit, it allows no swap.
            resources["memory"] = {"limit": self.memory, "swap": self.memory}
        if self.nano_cpus:
            resources["cpu"] = {"quota": self.nano_cpus * CPU_PERIOD_US // NANO,
                                "period": CPU_PERIOD_US}
        if self.pids:
            resources["pids"] = {"limit": self.pids}
        return resources

    @classmethod
    def from_resources(cls, resources: dict[str, Any]) -> Limits:
        """The limits in an OCI ``linux.resources`` (CPUs as the quota enforces them)."""
        cpu = resources.get("cpu")
        return cls(memory=resources.get("memory", {}).get("limit", 0),
                   nano_cpus=cpu["quota"] * NANO // cpu["period"] if cpu else 0,
                   pids=resources.get("pids", {}).get("limit", 0))


def parse_limits(memory: str | None, cpus: str | None, pids_limit: str | None) -> Limits:
    """The limits from ``-m``, ``--cpus`` and ``--pids-limit`` (None: not given).

    :class:`PydockError` for a value docker refuses, or for a limit this host has no
    cgroup controller to enforce (docker would drop it with a warning; a limit that
    silently does nothing is worse than none).
    """
    limits = Limits(
        memory=parse_memory(memory) if memory is not None else 0,
        nano_cpus=parse_cpus(cpus) if cpus is not None else 0,
        pids=parse_pids_limit(pids_limit) if pids_limit is not None else 0)
    hierarchies = _hierarchies()
    for controller in limits.controllers():
        _hierarchy_with(controller, hierarchies)
    return limits


def parse_memory(text: str) -> int:
    """``-m``: bytes, or a number with unit b, k, m, g, t or p (1024-based); 0 is no limit."""
    match = re.fullmatch(_SIZE, text)
    if match is None:
        raise PydockError(f"invalid memory size {text!r} for -m/--memory: expected a number of "
                          "bytes or one with a unit, such as 64m or 1.5g (units b, k, m, g)")
    whole, fraction, unit = match.groups()
    multiplier = 1024 ** (_SIZE_UNITS.index(unit.lower()) + 1) if unit else 1
    size = int(whole) * multiplier
    if fraction:
        size += int(float(f"0.{fraction}") * multiplier)
    if 0 < size < MIN_MEMORY:
        raise PydockError("Minimum memory limit allowed is 6MB")
    if size >= 2**63:
        raise PydockError(f"memory size {text!r} for -m/--memory is too large")
    return size


def parse_cpus(text: str) -> int:
    """``--cpus``: a decimal number of CPUs, as billionths (exactly, no float rounding)."""
    match = re.fullmatch(_CPUS, text)
    if match is None or not any(c.isdigit() for c in text):
        raise PydockError(f"invalid number of CPUs {text!r} for --cpus: expected a decimal "
                          "number such as 1.5")
    whole, fraction = match[1], (match[2] or "").rstrip("0")
    if len(fraction) > 9:
        raise PydockError(f"--cpus {text}: at most 9 decimal places")
    nano_cpus = int(whole or "0") * NANO + int(fraction.ljust(9, "0"))
    available = len(os.sched_getaffinity(0))
    if not MIN_NANO_CPUS <= nano_cpus <= available * NANO:
        raise PydockError(f"range of CPUs is from 0.01 to {available}.00, as there are only "
                          f"{available} CPUs available")
    return nano_cpus


def parse_pids_limit(text: str) -> int:
    """``--pids-limit``: at most this many tasks; 0 or less means no limit, as in docker."""
    if re.fullmatch(_PIDS, text) is None:
        raise PydockError(f"invalid --pids-limit {text!r}: expected a whole number "
                          "(-1 for no limit)")
    limit = max(int(text), 0)
    if limit > PIDS_MAX:
        raise PydockError(f"--pids-limit {text} is more than the kernel allows ({PIDS_MAX}); "
                          "use -1 for no limit")
    return limit


class Cgroup:
    """A container's cgroup, made by :func:`create`: one directory per hierarchy."""

    def __init__(self, name: str) -> None:
        self.name = name  # the directory's name in each hierarchy: see cgroup_name()
        self.directories: list[Path] = []
        # memory.oom_control (v1) or memory.events (v2): both count the OOM killer's kills
        # in a line "oom_kill N". None without a memory limit.
        self.oom_events: Path | None = None
        # The directories' cgroup.procs, opened for writing by the runtime before the fork.
        self.procs: list[int] = []

    def join(self) -> None:
        """Move the calling process into the cgroup: for the container's first process,
        right after the fork, so that the limits cover everything it does from then on.

        It writes "0", which the kernel (v1 and v2) reads as "the writing process": its own
        pid would be wrong, since in its new PID namespace the process is 1, and no pid has
        to be passed from the parent, which would have to hold the child back until then.
        """
        # Every hierarchy, before the cgroup namespace is unshared (which roots each at
        # the cgroup the process is in at that moment).
        for directory, fd in zip(self.directories, self.procs, strict=True):
            try:
                os.write(fd, b"0")
            except OSError as exc:
                raise OSError(exc.errno, f"joining cgroup {directory}: {exc.strerror}") from None
        self.close()

    def close(self) -> None:
        """Close the cgroup.procs files (the runtime's copies, once the child is forked)."""
        while self.procs:
            os.close(self.procs.pop())

    def oom_killed(self) -> bool:
        """Whether the kernel's OOM killer killed a process of the container. Read it before
        :func:`remove`; False once the cgroup is gone (``rm -f`` got there first)."""
        if self.oom_events is None:
            return False
        try:
            events = self.oom_events.read_text()
        except OSError:
            return False
        for line in events.splitlines():
            key, _, count = line.partition(" ")
            if key == "oom_kill":
                return int(count) > 0
        return False

    def remove(self) -> None:
        """:func:`remove` for this cgroup."""
        _remove_named(self.name)


def cgroup_name(root: Path, container_id: str) -> str:
    """``<root key>-<container id>``: the name of the container's cgroup below ``pydock/``.

    The key (a digest of the storage root's path) ties every cgroup to the storage root
    its container lives in: ``prune`` of one root, or the test suite's leak check, then
    only ever looks at, and removes, cgroups of its own containers, never those of another
    root's containers running on the same host.
    """
    from pydock.core.files import sha256_hex

    if not is_container_id(container_id):
        # The id becomes a path below the hierarchies' roots: never let a damaged record
        # point elsewhere.
        raise PydockError(f"invalid container id {container_id!r}")
    return f"{sha256_hex(os.fsencode(root))[:12]}-{container_id}"


def create(root: Path, container_id: str, limits: Limits,
           device_rules: Sequence[tuple[str, str]] = ()) -> Cgroup:
    """Make the container's cgroup in every hierarchy, with ``limits`` and, where cgroup v1
    has the devices controller, ``device_rules`` (:func:`pydock.core.runtime.devices.
    cgroup_rules`), and open it for :meth:`Cgroup.join`.

    On failure nothing is left behind and :class:`PydockError` says what failed.
    """
    cgroup_dir = cgroup_name(root, container_id)
    hierarchies = _hierarchies()
    by_hierarchy: dict[_Hierarchy, list[str]] = {hierarchy: [] for hierarchy in hierarchies}
    for controller in limits.controllers():
        by_hierarchy[_hierarchy_with(controller, hierarchies)].append(controller)
    cgroup = Cgroup(cgroup_dir)
    try:
        for hierarchy, controllers in by_hierarchy.items():
            parent = hierarchy.mount / PARENT
            if hierarchy.version == 2:
                _delegate(hierarchy.mount, parent, controllers)
            else:
                parent.mkdir(exist_ok=True)
                if "cpuset" in hierarchy.options:
                    _inherit_cpuset(hierarchy.mount, parent)
            directory = parent / cgroup_dir
            directory.mkdir()
            cgroup.directories.append(directory)
            for controller in controllers:
                for name, value, required in _settings(limits, controller, hierarchy.version):
                    if required or (directory / name).exists():
                        _write(directory / name, value)
            if "memory" in controllers:
                cgroup.oom_events = directory / (
                    "memory.oom_control" if hierarchy.version == 1 else "memory.events")
            if "devices" in hierarchy.options:
                for name, rule in device_rules:
                    _write(directory / name, rule)
        for directory in cgroup.directories:
            cgroup.procs.append(os.open(directory / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError as exc:
        cgroup.close()
        for directory in cgroup.directories:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise PydockError(f"setting up the container's cgroup failed: {exc}") from None
    return cgroup


def prime_migration() -> None:
    """Have the kernel's wait for the container's first cgroup move happen now, in a
    thread, while this process imports what the run needs, records the container and
    starts it.

    Moving a process between cgroups (a write to cgroup.procs, v1 or v2) takes the kernel's
    cgroup_threadgroup_rwsem for writing, and the first writer after a quiet spell waits for
    an RCU grace period: 10 to 17 ms here, on every run, as the container's first step. A
    writer that comes while another one's wait is under way waits only for what is left of
    it, and one that comes within a grace period of the last writer's exit waits not at
    all. So a thread moves this process into the cgroup it is already in (nothing moves,
    but the lock is taken) at once, then again every few milliseconds for a while: the
    container's own move, some 25 ms later (more on a loaded machine), finds the lock ready.

    The kernel holds cgroup_mutex while it waits, so a cgroup made in the meantime (the
    container's, by :func:`create`) waits too: that is why this begins before the run
    path's imports, not after. Should any of it fail, only the time is lost.
    """
    import _thread

    _thread.start_new_thread(_keep_migration_ready, ())


# How long, and how often, the priming thread takes the lock again.
_PRIMING_SECONDS = 0.1
_PRIMING_INTERVAL = 0.004


def _keep_migration_ready() -> None:
    # Nothing may escape a thread: Python would print its traceback on the CLI's stderr.
    with contextlib.suppress(OSError, ValueError, LookupError):
        hierarchy = _hierarchies()[0]
        procs = hierarchy.mount / _own_cgroup(hierarchy).lstrip("/") / "cgroup.procs"
        pid = str(os.getpid())
        deadline = time.monotonic() + _PRIMING_SECONDS
        while time.monotonic() < deadline:
            # Opened and closed each time: a fork of this process (the monitor) must not
            # find the descriptor.
            with open(procs, "w") as f:
                f.write(pid)
            time.sleep(_PRIMING_INTERVAL)


def _own_cgroup(hierarchy: _Hierarchy) -> str:
    """This process's cgroup in ``hierarchy``, from /proc/self/cgroup: the line "0::/path"
    for v2, "N:CONTROLLERS:/path" for v1 (the hierarchy's mount options name them).
    LookupError if there is none."""
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (hierarchy.version == 2 and not controllers) or (
                    hierarchy.version == 1 and controllers
                    and set(controllers.split(",")) <= hierarchy.options):
                return path
    raise LookupError(f"no cgroup of this process in {hierarchy.mount}")


def has_v1_controller(controller: str) -> bool:
    """Whether a cgroup v1 hierarchy on this host has ``controller``."""
    return any(hierarchy.version == 1 and controller in hierarchy.options
               for hierarchy in _hierarchies())


def remove(root: Path, container_id: str) -> None:
    """Remove the container's cgroup from every hierarchy; nothing to remove is fine.

    The container must be dead: its processes leave the cgroup as they exit (all of them
    die with the PID 1 of their namespace), which this waits for, up to
    ``REMOVE_TIMEOUT``, since the kernel refuses to remove a cgroup that is not empty.
    """
    _remove_named(cgroup_name(root, container_id))


def _remove_named(name: str) -> None:
    deadline = time.monotonic() + REMOVE_TIMEOUT
    for hierarchy in _hierarchies():
        directory = hierarchy.mount / PARENT / name
        delay = 0.001
        while True:
            try:
                directory.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise PydockError(f"cannot remove cgroup {directory}: {exc.strerror} "
                                      "(are processes still in it?)") from None
            _remove_children(directory)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _remove_children(directory: Path) -> None:
    """Remove the cgroups below ``directory``, deepest first: a container may make some in
    its own (it sees it as its cgroup namespace's root), and the kernel removes only a
    cgroup without children. No recursion: the container chooses the depth."""
    stack, found = [directory], []
    while stack:
        with contextlib.suppress(FileNotFoundError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                    found.append(Path(entry.path))
    for child in reversed(found):  # every cgroup comes after its parent in found
        with contextlib.suppress(OSError):  # still busy: the caller tries again
            child.rmdir()


def attach(root: Path, container_id: str) -> Cgroup:
    """The cgroup of a running container, opened for :meth:`Cgroup.join`: a process
    ``exec``'d into the container is held to the same limits as the rest of it."""
    cgroup = Cgroup(cgroup_name(root, container_id))
    for mount in dict.fromkeys(hierarchy.mount for hierarchy in _hierarchies()):
        directory = mount / PARENT / cgroup.name
        with contextlib.suppress(FileNotFoundError):
            cgroup.procs.append(os.open(directory / "cgroup.procs",
                                        os.O_WRONLY | os.O_CLOEXEC))
            cgroup.directories.append(directory)
    return cgroup


def _settings(limits: Limits, controller: str, version: int) -> list[tuple[str, str, bool]]:
    """(file, value, required) to write for one controller; optional files are written
    only where the kernel has them."""
    if controller == "memory":
        if version == 1:
            # memsw is memory+swap, so equal to the memory limit it allows no swap.
            return [("memory.limit_in_bytes", str(limits.memory), True),
                    ("memory.memsw.limit_in_bytes", str(limits.memory), False)]
        return [("memory.max", str(limits.memory), True), ("memory.swap.max", "0", False)]
    if controller == "cpu":
        quota = limits.nano_cpus * CPU_PERIOD_US // NANO
        if version == 1:
            return [("cpu.cfs_period_us", str(CPU_PERIOD_US), True),
                    ("cpu.cfs_quota_us", str(quota), True)]
        return [("cpu.max", f"{quota} {CPU_PERIOD_US}", True)]
    return [("pids.max", str(limits.pids), True)]


def _delegate(root: Path, parent: Path, controllers: list[str]) -> None:
    """cgroup v2: a cgroup has a controller's files only if its parent enabled the
    controller for its children (cgroup.subtree_control), all the way down from the root."""
    parent.mkdir(exist_ok=True)
    if not controllers:
        return
    for cgroup in (root, parent):
        control = cgroup / "cgroup.subtree_control"
        enabled = control.read_text().split()
        missing = [f"+{c}" for c in controllers if c not in enabled]
        if missing:
            _write(control, " ".join(missing))


def _inherit_cpuset(root: Path, parent: Path) -> None:
    """cgroup v1 cpuset: give ``parent`` its own parent's CPUs and memory nodes, and have
    its children (the containers' cgroups) take them when they are made."""
    if (parent / "cpuset.mems").read_text().strip():
        return  # done by an earlier run: mems is written last
    _write(parent / "cgroup.clone_children", "1")
    for name in ("cpuset.cpus", "cpuset.mems"):
        _write(parent / name, (root / name).read_text().strip())


def _write(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise OSError(exc.errno, f"writing {value!r} to {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def process_ids(root: Path, container_id: str) -> list[int]:
    """The pids (the host's numbers) of every process in the container's cgroup and the
    cgroups it made below it: all of its processes, whatever its PID namespace shows."""
    name = cgroup_name(root, container_id)
    found: set[int] = set()
    for hierarchy in _hierarchies():
        for procs in (hierarchy.mount / PARENT / name).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):  # gone meanwhile
                found.update(int(pid) for pid in procs.read_text().split())
    return sorted(found)


class _Hierarchy(NamedTuple):
    mount: Path
    version: int
    # v1: the superblock options, which name the hierarchy's controllers (among others,
    # such as "rw"). v2 lists its controllers in cgroup.controllers instead: empty here.
    options: frozenset[str]


def _hierarchies() -> list[_Hierarchy]:
    """The cgroup hierarchies mounted in this mount namespace, v1 and v2, in mount order;
    a hierarchy mounted twice is listed once (the second mkdir would fail)."""
    found = []
    seen = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            # "36 25 0:31 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory":
            # the superblock is field 3, the mount point field 5; after the "-": type,
            # source, superblock options.
            fields = line.split()
            fstype, _, options = fields[fields.index("-") + 1:][:3]
            if fstype in ("cgroup", "cgroup2"):
                if fields[2] in seen:
                    continue
                seen.add(fields[2])
            if fstype == "cgroup":
                found.append(_Hierarchy(Path(_unescape(fields[4])), 1,
                                        frozenset(options.split(","))))
            elif fstype == "cgroup2":
                found.append(_Hierarchy(Path(_unescape(fields[4])), 2, frozenset()))
    return found


def _hierarchy_with(controller: str, hierarchies: list[_Hierarchy]) -> _Hierarchy:
    for hierarchy in hierarchies:
        if hierarchy.version == 1 and controller in hierarchy.options:
            return hierarchy
    for hierarchy in hierarchies:
        if hierarchy.version == 2:
            with contextlib.suppress(OSError):
                if controller in (hierarchy.mount / "cgroup.controllers").read_text().split():
                    return hierarchy
    flag = {"memory": "-m/--memory", "cpu": "--cpus", "pids": "--pids-limit"}[controller]
    raise PydockError(f"{flag} needs the {controller} cgroup controller, which this host has "
                      "neither in a cgroup v1 hierarchy nor in cgroup v2")


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), field)
