"""Seccomp: which system calls a container's processes may make, as docker decides it.

Capabilities say what root in a container may do; a seccomp filter says which kernel entry
points its processes reach at all. Most kernel escapes of recent years went through a call
no container needs: a new user namespace, in which the caller holds every capability and
reaches code written for the host's root (CVE-2022-0185: a heap overflow in the
filesystem-context code, reached by ``unshare -U`` then mount; CVE-2022-0492: a cgroup v1
``release_agent`` written from a nested namespace), keyctl (the keyring is not namespaced:
keys of other containers and the host), bpf, perf_event_open, userfaultfd (the usual way to
win a kernel race), kexec, module loading, ``open_by_handle_at`` (the "shocker" read of the
host's files). Docker's default profile refuses those with EPERM unless the container holds
the capability that would make them legitimate; every other call a program needs passes.

The flow, as in docker and runc:

1. ``run`` picks a profile (:func:`given`): docker's default, the data file
   ``seccomp_default.json`` installed with pydock (docker's own, from
   ``github.com/moby/profiles/seccomp`` v0.2.3, in docker's JSON format), or
   ``--security-opt seccomp=PROFILE.json``, or none with ``seccomp=unconfined``.
2. :func:`resolve` turns it into the OCI runtime spec's ``linux.seccomp`` for this host and
   this container: the native architecture plus the ones docker's ``archMap`` pairs with it
   (x86_64: x86 and x32, so that 32-bit programs run, under the same rules; a call from
   any other architecture kills the process),
   and only the rules whose ``includes``/``excludes`` (capabilities, architectures, minimum
   kernel) hold. The container's record stores the result, and ``exec`` reuses it.
3. The container's process has libseccomp build the filter after the fork (or finds the
   program in a cache) and loads it (:func:`prepare`); it stays for the process and
   everything it execs or forks.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydock.core.errors import PydockError
from pydock.core.files import read_regular
from pydock.core.runtime.security_opts import SECCOMP, split
from pydock.core.syscalls import set_seccomp_filter

DEFAULT_PROFILE = Path(__file__).with_name("seccomp_default.json")
BUILTIN = "builtin"
UNCONFINED = "unconfined"
# A profile listing every system call with arguments is some 100 kB; a bigger file is a
# mistake (or /dev/zero), not a profile, and is not read into memory.
PROFILE_MAX_BYTES = 1 << 20

ACTIONS = frozenset({"SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                     "SCMP_ACT_TRAP", "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW",
                     "SCMP_ACT_LOG"})
OPERATORS = frozenset({"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                       "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"})
ARCHITECTURES = frozenset(
    "SCMP_ARCH_" + name for name in (
        "X86", "X86_64", "X32", "ARM", "AARCH64", "LOONGARCH64", "M68K", "MIPS", "MIPS64",
        "MIPS64N32", "MIPSEL", "MIPSEL64", "MIPSEL64N32", "PPC", "PPC64", "PPC64LE", "S390",
        "S390X", "PARISC", "PARISC64", "RISCV64", "SH", "SHEB"))
# uname's machine -> (Go's GOARCH, which docker's includes/excludes "arches" name; the
# architecture docker's archMap keys on).
_MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"), "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "i686": ("386", "SCMP_ARCH_X86"), "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"), "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"), "loongarch64": ("loong64",
                                                              "SCMP_ARCH_LOONGARCH64"),
}
_ERRNO_MAX = 0xFFFF  # the filter's return value carries errno in 16 bits
_VALUE_MAX = (1 << 64) - 1
_ARGUMENTS = 6
_KERNEL_VERSION = r"(\d+)\.(\d+)"  # compiled and cached by re on first use

Profile = dict[str, Any]


def given(options: Sequence[str]) -> tuple[list[str], Profile | None]:
    """The profile ``--security-opt`` values ``options`` choose (the last ``seccomp=`` one
    decides; docker's default without one), None for ``unconfined``; and the options as
    docker records them, each profile file replaced by ``seccomp=`` and its JSON, compact:
    what the container was given, whatever becomes of the file. PydockError for a profile
    that cannot be read or is not one."""
    recorded = []
    choice = BUILTIN
    profile: Profile | None = None  # the last file read, if the choice is a file
    for option in options:
        key, value = split(option)
        if key == SECCOMP and value is not None:
            choice = value
            if value not in (BUILTIN, UNCONFINED):
                profile = read_profile(value)
                option = f"{SECCOMP}={json.dumps(profile, separators=(',', ':'))}"
        recorded.append(option)
    if choice == UNCONFINED:
        return recorded, None
    if choice == BUILTIN:
        return recorded, default_profile()
    return recorded, profile


def default_profile() -> Profile:
    with DEFAULT_PROFILE.open("rb") as f:
        return validate(json.load(f), "builtin")


def read_profile(path: str) -> Profile:
    """The profile in the file ``path``, checked (:func:`validate`)."""
    try:
        # Only a regular file, opened without blocking: a FIFO would hang the run.
        data = read_regular(path, PROFILE_MAX_BYTES, f"seccomp profile ({path})")
    except OSError as exc:
        raise PydockError(f"opening seccomp profile ({path}) failed: {exc.strerror}") from None
    try:
        profile = json.loads(data)
    except ValueError as exc:  # UnicodeDecodeError included
        raise PydockError(f"decoding seccomp profile ({path}) failed: {exc}") from None
    return validate(profile, path)


def validate(profile: Any, source: str) -> Profile:
    """``profile`` if it is a profile in docker's format that pydock can apply;
    PydockError naming ``source`` and the first fault otherwise.

    As in docker, a rule may name one call (``name``) or several (``names``), and a name
    this host's libseccomp does not know is skipped when the filter is built (profiles
    list the calls of every architecture and kernel). ``SCMP_ACT_NOTIFY`` (a user-space
    agent decides) and ``flags`` are refused: pydock has no agent, and sets no flags.
    """
    def fault(message: str) -> PydockError:
        return PydockError(f"invalid seccomp profile ({source}): {message}")

    if not isinstance(profile, dict):
        raise fault("expected a JSON object")
    _check_action(profile.get("defaultAction"), profile.get("defaultErrnoRet"),
                  "defaultAction", fault)
    if profile.get("flags"):
        raise fault("flags are not supported")
    architectures = profile.get("architectures") or []
    arch_map = profile.get("archMap") or []
    if architectures and arch_map:
        raise fault("use either 'architectures' or 'archMap', not both")
    if not isinstance(architectures, list) or not isinstance(arch_map, list):
        raise fault("'architectures' and 'archMap' must be lists")
    for entry in arch_map:
        if not isinstance(entry, dict):
            raise fault("each 'archMap' entry must be an object")
        _check_architectures([entry.get("architecture")], fault)
        _check_architectures(entry.get("subArchitectures") or [], fault)
    _check_architectures(architectures, fault)
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise fault("'syscalls' must be a list")
    for number, rule in enumerate(syscalls):
        _check_rule(rule, lambda message, n=number: fault(f"syscalls[{n}]: {message}"))
    return profile


def _check_rule(rule: Any, fault: Any) -> None:
    if not isinstance(rule, dict):
        raise fault("expected an object")
    names = rule.get("names") or []
    if rule.get("name"):
        if names:
            raise fault("use 'name' or 'names', not both")
        names = [rule["name"]]
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise fault("'names' must be a list of system call names")
    _check_action(rule.get("action"), rule.get("errnoRet"), "action", fault)
    args = rule.get("args") or []
    if not isinstance(args, list):
        raise fault("'args' must be a list")
    for arg in args:
        if not isinstance(arg, dict) or arg.get("op") not in OPERATORS:
            raise fault(f"unknown comparison {arg!r}: expected op one of {sorted(OPERATORS)}")
        if not _is_int(arg.get("index"), _ARGUMENTS - 1):
            raise fault(f"argument index must be 0 to {_ARGUMENTS - 1}: {arg!r}")
        if not _is_int(arg.get("value", 0), _VALUE_MAX) or \
                not _is_int(arg.get("valueTwo", 0), _VALUE_MAX):
            raise fault(f"argument values must be 64-bit unsigned integers: {arg!r}")
    for condition in ("includes", "excludes"):
        found = rule.get(condition) or {}
        if not isinstance(found, dict):
            raise fault(f"'{condition}' must be an object")
        for field in ("caps", "arches"):
            if not isinstance(found.get(field) or [], list):
                raise fault(f"'{condition}.{field}' must be a list")
        kernel = found.get("minKernel")
        if kernel is not None and not (isinstance(kernel, str)
                                       and re.fullmatch(_KERNEL_VERSION, kernel)):
            raise fault(f"'{condition}.minKernel' must be a version such as \"4.8\"")


def _check_action(action: Any, errno_ret: Any, field: str, fault: Any) -> None:
    if action not in ACTIONS:
        raise fault(f"unknown {field} {action!r}: expected one of {sorted(ACTIONS)}")
    if errno_ret is not None and not _is_int(errno_ret, _ERRNO_MAX):
        raise fault(f"errnoRet must be 0 to {_ERRNO_MAX}: {errno_ret!r}")


def _check_architectures(names: Any, fault: Any) -> None:
    if not isinstance(names, list):
        raise fault("architectures must be lists")
    for name in names:
        if name not in ARCHITECTURES:
            raise fault(f"unknown architecture {name!r}")


def _is_int(value: Any, maximum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def resolve(profile: Profile, capability_set: Sequence[str]) -> dict[str, Any]:
    """The OCI runtime spec's ``linux.seccomp`` for a container on this host with the
    capabilities ``capability_set`` (names without ``CAP_``), from a checked profile,
    by docker's rules:

    - architectures: the profile's ``architectures``, or the ``archMap`` entry of this
      host's architecture with its sub-architectures;
    - a rule applies if its ``includes`` all hold (every capability in ``caps`` granted,
      this architecture in ``arches``, the kernel at least ``minKernel``) and no
      ``excludes`` does (any capability granted, this architecture, the kernel);
    - the rules keep only what the filter needs: ``names``, ``action``, ``errnoRet``, ``args``.
    """
    machine = os.uname().machine
    go_arch, native = _MACHINES.get(machine, (machine, ""))
    granted = {"CAP_" + name for name in capability_set}
    kernel = _kernel_version(os.uname().release)
    architectures = list(profile.get("architectures") or [])
    for entry in profile.get("archMap") or []:
        if entry["architecture"] == native:
            architectures += [native, *(entry.get("subArchitectures") or [])]
    syscalls = []
    for rule in profile.get("syscalls") or []:
        includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
        if (go_arch in (excludes.get("arches") or [])
                or granted & set(excludes.get("caps") or [])
                or ("minKernel" in excludes
                    and kernel >= _kernel_version(excludes["minKernel"]))):
            continue
        if ((includes.get("arches") and go_arch not in includes["arches"])
                or not set(includes.get("caps") or []) <= granted
                or ("minKernel" in includes
                    and kernel < _kernel_version(includes["minKernel"]))):
            continue
        applied: dict[str, Any] = {"names": rule.get("names") or [rule["name"]],
                                   "action": rule["action"]}
        if rule.get("errnoRet") is not None:
            applied["errnoRet"] = rule["errnoRet"]
        if rule.get("args"):
            applied["args"] = [{"index": arg["index"], "value": arg.get("value", 0),
                                "valueTwo": arg.get("valueTwo", 0), "op": arg["op"]}
                               for arg in rule["args"]]
        syscalls.append(applied)
    resolved: dict[str, Any] = {"defaultAction": profile["defaultAction"]}
    if profile.get("defaultErrnoRet") is not None:
        resolved["defaultErrnoRet"] = profile["defaultErrnoRet"]
    resolved["architectures"] = architectures
    resolved["syscalls"] = syscalls
    return resolved


def _kernel_version(release: str) -> tuple[int, int]:
    found = re.match(_KERNEL_VERSION, release)
    return (int(found[1]), int(found[2])) if found else (0, 0)


def prepare(config: dict[str, Any] | None, cache_dir: str = "") -> Callable[[], None]:
    """The filter ``linux.seccomp`` ``config`` describes, ready: returns what loads it into
    this process (nothing for None: unconfined).

    Runs in the container's process, after the fork (libseccomp is loaded there, never in
    the CLI) and before its root changes or it joins a container's mount namespace: the
    library, the cache and this module's code are the host's files.

    Loading takes CAP_SYS_ADMIN unless ``no_new_privs`` is already set: without
    no-new-privileges, load before the capabilities are dropped (and the profile must then
    allow what the rest of the set-up does); with it, set the flag first and load after.

    libseccomp builds and compiles docker's default profile for three architectures in
    about 20 ms, every run the same program: so the program it generates is kept in
    ``cache_dir`` (the storage root's ``cache/seccomp``; crun keeps such a cache too), keyed
    by the whole of ``config``, the kernel and libseccomp's version (a newer one knows more
    calls by name), and loaded from there with one prctl. No ``cache_dir``, no cache.
    """
    if config is None:
        return _unconfined
    from pydock.core.runtime import libseccomp

    uname = os.uname()
    key = json.dumps([config, uname.release, uname.machine, libseccomp.version()],
                     sort_keys=True).encode()
    path = f"{cache_dir}/{zlib.crc32(key):08x}"
    program = _cached(cache_dir, path, key) if cache_dir else None
    if program is None:
        program = _generate(config)
        if cache_dir:
            _store(cache_dir, path, key, program)
    return lambda: set_seccomp_filter(program)


def _unconfined() -> None:
    pass


def _cached(cache_dir: str, path: str, key: bytes) -> bytes | None:
    """The program stored at ``path`` for ``key``, None if there is none. Only a file that
    root wrote in a directory only root can write is taken: a filter read from elsewhere
    would be a way around every filter."""
    try:
        directory = os.lstat(cache_dir)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        found = os.fstat(fd)
        if not all(item.st_uid == 0 and not item.st_mode & 0o022 for item in (directory, found)):
            return None
        stored_key, _, program = f.read().partition(b"\0")
    # The name is a checksum: the key itself decides.
    return program if stored_key == key and program else None


def _store(cache_dir: str, path: str, key: bytes, program: bytes) -> None:
    """Keep ``program`` for ``key``, atomically (containers start concurrently); a cache
    that cannot be written costs time, not the run."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(cache_dir, 0o700, exist_ok=True)
        # 0600 whatever the umask: a program others could write would not be taken.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key + b"\0" + program)
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _generate(config: dict[str, Any]) -> bytes:
    """libseccomp's BPF program for ``config``, by runc's rules: a name libseccomp does not
    know is skipped; a rule whose action is the default action is skipped (libseccomp
    refuses it); and the conditions of a rule that compares one argument more than once
    are added as separate rules (libseccomp cannot compare one argument twice in a rule),
    so any one of them lets the call through.

    libseccomp would set ``no_new_privs`` itself when its program is loaded, silently
    giving every container no-new-privileges: that is turned off, as runc does.
    """
    from pydock.core.runtime import libseccomp

    default = _action(libseccomp, config["defaultAction"], config.get("defaultErrnoRet"))
    seccomp_filter = libseccomp.Filter(default)
    try:
        seccomp_filter.set_attribute(libseccomp.ATTR_CTL_NNP, 0)
        for architecture in config.get("architectures") or []:
            seccomp_filter.add_architecture(architecture.removeprefix("SCMP_ARCH_").lower())
        for rule in config["syscalls"]:
            action = _action(libseccomp, rule["action"], rule.get("errnoRet"))
            if action == default:
                continue
            comparisons = [libseccomp.ArgCmp(arg["index"], libseccomp.COMPARISONS[arg["op"]],
                                                 arg["value"], arg["valueTwo"])
                           for arg in rule.get("args") or []]
            indexes = [comparison.arg for comparison in comparisons]
            groups = ([[comparison] for comparison in comparisons]
                      if len(set(indexes)) < len(indexes) else [comparisons])
            for name in rule["names"]:
                number = libseccomp.resolve_syscall(name)
                if number is None:
                    continue
                for group in groups:
                    seccomp_filter.add_rule(action, number, group)
        return seccomp_filter.export()
    finally:
        seccomp_filter.release()


def _action(libseccomp: Any, name: str, errno_ret: int | None) -> int:
    """libseccomp's value for the action ``name``; ERRNO and TRACE return ``errno_ret``,
    EPERM by default (runc's default)."""
    value = 1 if errno_ret is None else errno_ret  # EPERM
    actions = {
        "SCMP_ACT_KILL": libseccomp.ACT_KILL_THREAD,
        "SCMP_ACT_KILL_THREAD": libseccomp.ACT_KILL_THREAD,
        "SCMP_ACT_KILL_PROCESS": libseccomp.ACT_KILL_PROCESS,
        "SCMP_ACT_TRAP": libseccomp.ACT_TRAP,
        "SCMP_ACT_ERRNO": libseccomp.ACT_ERRNO | value,
        "SCMP_ACT_TRACE": libseccomp.ACT_TRACE | value,
        "SCMP_ACT_LOG": libseccomp.ACT_LOG,
        "SCMP_ACT_ALLOW": libseccomp.ACT_ALLOW,
    }
    return int(actions[name])
