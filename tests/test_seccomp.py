"""The seccomp filter: docker's default profile on every container and on what ``exec``
starts in it, ``--security-opt seccomp=PROFILE.json`` and ``seccomp=unconfined``.

The calls are made by a static probe (tests/probes/seccomp_calls.c), so that what answers
is the filter, not a shell's own checks; ``unconfined`` runs show which refusals are the
filter's and which the kernel's (capabilities).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path
from typing import Any

import pytest
from helpers import storage_entries
from probes import import_probe_image

from pydock.core.runtime import capabilities, libseccomp, seccomp
from pydock.core.storage_root import SECCOMP_CACHE
from pydock.testing.cli import Pydock

CONTAINERS_COMMON = Path("/usr/share/containers/seccomp.json")
# userns last: once in a new user namespace, the probe may no longer mount.
CALLS = ("mount", "keyctl", "clone3", "userns")
EPERM, ENOSYS = "Operation not permitted", "Function not implemented"


def calls(pydock: Pydock, tmp_path: Path, *options: str, by_exec: bool = False) -> dict[str, str]:
    """{call: "ok" or its error} for the probe's CALLS, run with ``options``."""
    image = import_probe_image(pydock, tmp_path, ["seccomp_calls"])
    command = ("/probes/seccomp_calls", *CALLS)
    if by_exec:
        pydock.ok("run", "-d", "--name", "box", "--image", image, *options,
                  "busybox", "sleep", "60")
        out = pydock.ok("exec", "box", *command)
    else:
        out = pydock.ok("run", "--rm", "--image", image, *options, *command)
    return dict(line.split(": ", 1) for line in out.splitlines())


@pytest.mark.parametrize("by_exec", [False, True], ids=["run", "exec"])
def test_the_default_filter_refuses_what_dockers_refuses(pydock: Pydock, tmp_path: Path,
                                                         by_exec: bool) -> None:
    # A new user namespace is where CVE-2022-0185 and CVE-2022-0492 began; the keyring is
    # not namespaced; clone3 says ENOSYS, so that glibc falls back to clone, whose flags
    # the filter can read.
    assert calls(pydock, tmp_path, by_exec=by_exec) == {
        "userns": EPERM, "keyctl": EPERM, "mount": EPERM, "clone3": ENOSYS}


def test_unconfined_shows_the_refusals_are_the_filters(pydock: Pydock, tmp_path: Path) -> None:
    # mount still fails: that refusal is the capability's (no CAP_SYS_ADMIN), not the filter's.
    assert calls(pydock, tmp_path, "--security-opt", "seccomp=unconfined") == {
        "userns": "ok", "keyctl": "ok", "mount": EPERM, "clone3": "Invalid argument"}


def test_cap_sys_admin_opens_what_docker_gates_on_it(pydock: Pydock, tmp_path: Path) -> None:
    # As in docker: mount, unshare and clone3 follow CAP_SYS_ADMIN; keyctl follows nothing.
    assert calls(pydock, tmp_path, "--cap-add", "SYS_ADMIN") == {
        "userns": "ok", "keyctl": EPERM, "mount": "ok", "clone3": "Invalid argument"}


@pytest.mark.parametrize("by_exec", [False, True], ids=["run", "exec"])
@pytest.mark.parametrize("options", [
    ("-u", "65534"),
    ("--security-opt", "no-new-privileges"),
    ("-u", "65534", "--security-opt", "no-new-privileges"),
], ids=["user", "no-new-privileges", "both"])
def test_the_filter_holds_for_any_user_and_with_no_new_privileges(
        pydock: Pydock, tmp_path: Path, options: tuple[str, ...], by_exec: bool) -> None:
    found = calls(pydock, tmp_path, *options, by_exec=by_exec)
    assert (found["userns"], found["clone3"]) == (EPERM, ENOSYS)
    command = ("cat", "/proc/self/status")
    out = pydock.ok("exec", "box", *command) if by_exec else \
        pydock.ok("run", "--rm", *options, *command)
    status = dict(line.split(":", 1) for line in out.splitlines())
    assert status["Seccomp"].strip() == "2"  # SECCOMP_MODE_FILTER
    assert status["NoNewPrivs"].strip() == ("1" if "no-new-privileges" in options else "0")
    assert status["Uid"].split()[0] == ("65534" if "-u" in options else "0")


def test_a_profile_of_ones_own_is_applied_and_shown(pydock: Pydock, tmp_path: Path) -> None:
    profile = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    path = tmp_path / "no-mkdir.json"
    path.write_text(json.dumps(profile, indent=2))
    option = f"seccomp={path}"
    result = pydock("run", "--name", "box", "--security-opt", option, "mkdir", "/new")
    assert result.returncode == 1
    assert "Operation not permitted" in result.stderr
    # What docker records: the profile's JSON, compact, whatever becomes of the file.
    path.unlink()
    shown = pydock.inspect("box")
    assert shown["HostConfig"]["SecurityOpt"] == \
        ["seccomp=" + json.dumps(profile, separators=(",", ":"))]
    assert shown["Spec"]["linux"]["seccomp"] == {
        "defaultAction": "SCMP_ACT_ALLOW", "architectures": [],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}


def test_inspect_shows_the_default_filter_and_unconfined(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "plain", "true")
    pydock.ok("run", "--name", "free", "--security-opt", "seccomp:unconfined", "true")
    plain = pydock.inspect("plain")
    assert plain["HostConfig"]["SecurityOpt"] is None
    resolved = plain["Spec"]["linux"]["seccomp"]
    assert (resolved["defaultAction"], resolved["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    allowed = {name for rule in resolved["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW"
               for name in rule["names"]}
    assert {"read", "execve", "chown", "chroot"} <= allowed  # chroot: CAP_SYS_CHROOT is held
    assert not {"mount", "unshare", "keyctl", "bpf", "init_module", "kexec_load"} & allowed
    if os.uname().machine == "x86_64":
        assert resolved["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                             "SCMP_ARCH_X32"]
    free = pydock.inspect("free")
    assert free["HostConfig"]["SecurityOpt"] == ["seccomp:unconfined"]
    assert free["Spec"]["linux"]["seccomp"] is None


def test_the_resolved_filter_keeps_the_record_small(pydock: Pydock) -> None:
    # Every record holds its container's filter: docker's default, resolved for the
    # container, adds some 10 kB to a record of about 4 (pretty-printed, a name a line).
    pydock.ok("run", "--name", "box", "true")
    pydock.ok("run", "--name", "free", "--security-opt", "seccomp=unconfined", "true")
    filtered, free = (len((pydock.root / "containers" / name / "state.json").read_bytes())
                      for name in ("box", "free"))
    assert len(json.dumps(pydock.inspect("box")["Spec"]["linux"]["seccomp"])) < 8000
    assert filtered - free < 12000


@pytest.mark.parametrize(("content", "message"), [
    (None, "opening seccomp profile ({path}) failed: No such file or directory"),
    ("{not json", "decoding seccomp profile ({path}) failed: "),
    ("[]", "invalid seccomp profile ({path}): expected a JSON object"),
    ('{"defaultAction": "SCMP_ACT_NOTIFY"}', "unknown defaultAction 'SCMP_ACT_NOTIFY'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], '
     '"action": "SCMP_ACT_EXPLODE"}]}', "syscalls[0]: unknown action 'SCMP_ACT_EXPLODE'"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["kill"], '
     '"action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}',
     "syscalls[0]: argument index must be 0 to 5"),
    ('{"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_Z80"}]}',
     "unknown architecture 'SCMP_ARCH_Z80'"),
    ('{"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 70000}', "errnoRet must be"),
    ("x" * (seccomp.PROFILE_MAX_BYTES + 1), "is larger than"),
    ("FIFO", "seccomp profile ({path}) is not a regular file"),
])
def test_a_bad_profile_is_one_line_125_and_creates_nothing(
        pydock: Pydock, tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "profile.json"
    if content == "FIFO":
        os.mkfifo(path)
    elif content is not None:
        path.write_text(content)
    pydock.refused("run", "--security-opt", f"seccomp={path}", "true",
                   match=message.format(path=path))
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []


def test_an_empty_seccomp_option_is_refused(pydock: Pydock) -> None:
    pydock.refused("run", "--security-opt", "seccomp=", "true",
                   match="invalid --security-opt 'seccomp=': expected seccomp=PROFILE.json")


def test_a_cached_program_is_taken_only_if_root_wrote_it_for_this_filter(
        pydock: Pydock) -> None:
    pydock.ok("run", "--name", "box", "true")
    config = pydock.inspect("box")["Spec"]["linux"]["seccomp"]
    uname = os.uname()
    key = json.dumps([config, uname.release, uname.machine, libseccomp.version()],
                     sort_keys=True).encode()
    path = pydock.root / SECCOMP_CACHE / f"{zlib.crc32(key):08x}"
    assert path.read_bytes().startswith(key + b"\0")  # the run above stored it
    # A program that allows every call: one BPF_RET|BPF_K of SECCOMP_RET_ALLOW.
    allow_all = struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000)
    for content, mode in ((key.replace(b"execve", b"execv3") + b"\0" + allow_all, 0o644),
                          (key + b"\0" + allow_all, 0o666)):
        path.write_bytes(content)
        path.chmod(mode)
        result = pydock("run", "--rm", "unshare", "-U", "true")
        assert (result.returncode, EPERM in result.stderr) == (1, True)
        assert path.read_bytes().startswith(key + b"\0") and path.stat().st_mode & 0o777 == 0o600


# -- the data file against containers-common's profile -----------------------------------
#
# Debian's podman installs containers-common's profile; both descend from docker's. For
# docker's default capabilities, a call's verdict under each is compared: a difference not
# named here fails, so that drift in either shows.

# In docker's profile (moby/profiles v0.2.3), newer than Debian 12's containers-common
# (0.50, 2022): calls of later kernels.
NEWER_IN_DOCKERS = frozenset({
    "cachestat", "fchmodat2", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
    "getxattrat", "io_pgetevents_time64", "listmount", "listxattrat", "map_shadow_stack",
    "mseal", "removexattrat", "riscv_hwprobe", "setxattrat", "statmount", "uretprobe",
})
# Refused by containers-common's, allowed by docker's.
REFUSED_BY_PODMAN = frozenset({"io_pgetevents", "vmsplice"})
# Allowed by containers-common's, leaving the refusal to the kernel's capability checks
# (podman runs nested and rootless containers, where those calls are the point). Docker's
# filter refuses them without the capability: a bug behind the capability check is then
# out of reach (CVE-2022-0185 was reached through unshare -U, then fsconfig).
LEFT_TO_CAPABILITIES_BY_PODMAN = frozenset({
    "clone3", "fsconfig", "fsmount", "fsopen", "fspick", "mount", "mount_setattr",
    "move_mount", "open_tree", "pivot_root", "setns", "syslog", "umount", "umount2",
    "unshare", "reboot", "get_mempolicy", "mbind", "set_mempolicy", "pidfd_getfd",
    # And keyctl, which no capability guards: podman gives containers a keyring of their own.
    "keyctl",
})
# Refined by docker with argument checks where podman allows every call: clone without
# namespace flags (0x7E020000: no new namespaces without CAP_SYS_ADMIN), and socket
# without AF_ALG (38) and AF_VSOCK (40) (CVE-2021-26708 was a vsock race).
NARROWED_BY_DOCKER = frozenset({"clone", "socket"})
# Old 32-bit x86 and other architectures' calls that containers-common lists and docker's
# profile never did; glibc does not use them.
OLD_CALLS_IN_PODMANS = frozenset({
    "readdir", "sigaction", "signal", "sigpending", "sigsuspend", "syscall", "timerfd",
})


def verdicts(profile: dict[str, Any]) -> dict[str, frozenset[str]]:
    resolved = seccomp.resolve(seccomp.validate(profile, "test"), capabilities.DOCKER_DEFAULT)
    found: dict[str, set[str]] = {}
    for rule in resolved["syscalls"]:
        verdict = json.dumps([rule["action"], rule.get("errnoRet"), rule.get("args")])
        for name in rule["names"]:
            found.setdefault(name, set()).add(verdict)
    return {name: frozenset(verdict) for name, verdict in found.items()}


@pytest.mark.quick
@pytest.mark.skipif(not CONTAINERS_COMMON.exists(),
                    reason="containers-common is not installed (scripts/setup.sh installs it)")
def test_the_default_profile_differs_from_containers_commons_only_as_named() -> None:
    ours = json.loads(seccomp.DEFAULT_PROFILE.read_text())
    theirs = json.loads(CONTAINERS_COMMON.read_text())
    # Docker refuses what it does not list with EPERM, containers-common with ENOSYS (a
    # program then falls back, as from a call its kernel lacks).
    assert (ours["defaultAction"], ours["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 1)
    assert (theirs["defaultAction"], theirs["defaultErrnoRet"]) == ("SCMP_ACT_ERRNO", 38)
    mine, podmans = verdicts(ours), verdicts(theirs)
    differing = {name for name in mine.keys() | podmans.keys()
                 if mine.get(name) != podmans.get(name)
                 # Each refusing explicitly what the other refuses by default is no difference.
                 and not (_refused(mine.get(name)) and _refused(podmans.get(name)))}
    named = (NEWER_IN_DOCKERS | REFUSED_BY_PODMAN | LEFT_TO_CAPABILITIES_BY_PODMAN
             | NARROWED_BY_DOCKER | OLD_CALLS_IN_PODMANS)
    assert sorted(differing - named) == [], "differences no one has named"
    assert sorted(named - differing) == [], "named differences that are gone"


def _refused(verdict: frozenset[str] | None) -> bool:
    return verdict is None or all(json.loads(v)[0] == "SCMP_ACT_ERRNO" for v in verdict)
