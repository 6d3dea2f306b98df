"""docker's security defaults and options: capabilities (--cap-add, --cap-drop), masked and
read-only kernel paths, no-new-privileges (--security-opt), and a non-dumpable exec.

What a container's processes may do, the processes ``exec`` starts in it may do, no more:
each check looks at both.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import DRIVERS, SETUID_ID, import_setuid_image, storage_entries, write_legacy_record

from pydock.core.errors import PydockError
from pydock.core.runtime import capabilities
from pydock.core.runtime.capabilities import CAPABILITIES, DOCKER_DEFAULT, effective_add_drop, mask
from pydock.core.runtime.security_opts import no_new_privileges
from pydock.testing.cli import Pydock

DEFAULT_MASK = mask(DOCKER_DEFAULT)
CAPABILITY_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")

# How a command is started: by `run` as the container's first process, or by `exec` in a
# running container created with the same options.
Start = Callable[..., str]


def by_run(pydock: Pydock, options: tuple[str, ...], *command: str) -> str:
    return pydock.ok("run", "--rm", *options, *command)


def by_exec(pydock: Pydock, options: tuple[str, ...], *command: str) -> str:
    pydock.ok("run", "-d", "--name", "box", *options, "sleep", "60")
    return pydock.ok("exec", "box", *command)


STARTS = pytest.mark.parametrize("start", [by_run, by_exec], ids=["run", "exec"])


def status(start: Start, pydock: Pydock, *options: str) -> dict[str, str]:
    """/proc/self/status of a process started with ``options``, as {field: value}."""
    out = start(pydock, options, "cat", "/proc/self/status")
    return {key: value.strip() for key, _, value in
            (line.partition(":") for line in out.splitlines())}


def capability_sets(start: Start, pydock: Pydock, *options: str) -> dict[str, int]:
    found = status(start, pydock, *options)
    return {key: int(found[key], 16) for key in CAPABILITY_SETS}


def only(capability_set: int) -> dict[str, int]:
    """The sets of a root process that has exactly ``capability_set``."""
    return {"CapInh": 0, "CapPrm": capability_set, "CapEff": capability_set,
            "CapBnd": capability_set, "CapAmb": 0}


# -- capabilities -------------------------------------------------------------------


@STARTS
def test_root_in_the_container_has_dockers_capabilities_only(pydock: Pydock,
                                                             start: Start) -> None:
    assert capability_sets(start, pydock) == only(DEFAULT_MASK)


def test_a_non_root_user_has_no_capabilities(pydock: Pydock) -> None:
    sets = capability_sets(by_run, pydock, "-u", "nobody")
    assert (sets["CapPrm"], sets["CapEff"], sets["CapBnd"]) == (0, 0, DEFAULT_MASK)


@STARTS
@pytest.mark.parametrize(("options", "expected"), [
    (("--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE"), mask(["NET_BIND_SERVICE"])),
    (("--cap-add", "sys_admin", "--cap-drop", "cap_chown", "--cap-drop", "Kill"),
     (DEFAULT_MASK | mask(["SYS_ADMIN"])) & ~mask(["CHOWN", "KILL"])),
    (("--cap-add", "all", "--cap-drop", "SYS_ADMIN"),
     capabilities.held() & ~mask(["SYS_ADMIN"])),
    (("--cap-drop", "ALL"), 0),
], ids=["drop-all-add-one", "add-and-drop", "add-all-drop-one", "drop-all"])
def test_cap_add_and_cap_drop_set_bounding_permitted_and_effective(
        pydock: Pydock, start: Start, options: tuple[str, ...], expected: int) -> None:
    assert capability_sets(start, pydock, *options) == only(expected)


def test_added_and_dropped_capabilities_take_effect(pydock: Pydock) -> None:
    # Mounting needs CAP_SYS_ADMIN (test_mounting_is_not_allowed: not by default); the
    # tmpfs lands in the container's own mount namespace.
    assert pydock.ok("run", "--rm", "--cap-add", "SYS_ADMIN", "sh", "-c",
                     "mount -t tmpfs none /tmp && echo mounted") == "mounted\n"
    chown = ("sh", "-c", "touch /tmp/f && chown nobody /tmp/f")
    assert pydock("run", "--rm", *chown).returncode == 0
    refused = pydock("run", "--rm", "--cap-drop", "CHOWN", *chown)
    assert refused.returncode == 1 and "Operation not permitted" in refused.stderr


def test_a_container_without_setuid_still_runs_as_its_user(pydock: Pydock) -> None:
    # The switch to the user needs CAP_SETUID and CAP_SETGID, which the container
    # does not keep.
    out = pydock.ok("run", "--rm", "--cap-drop", "ALL", "-u", "nobody", "sh", "-c",
                    "id -u; grep CapBnd /proc/self/status")
    assert out.split() == ["65534", "CapBnd:", f"{0:016x}"]


@pytest.mark.quick
@pytest.mark.parametrize(("add", "drop", "expected"), [
    ([" net_admin", "CAP_NET_ADMIN", "Net_Admin"], [], (["CAP_NET_ADMIN"], [])),
    (["ALL", "chown"], ["sys_admin"], (["ALL"], ["CAP_SYS_ADMIN"])),
    (["chown"], ["kill", "all"], (["CAP_CHOWN"], ["ALL"])),
    (["all"], ["all"], (["ALL"], [])),
    (["kill", "chown"], ["CAP_KILL"], (["CAP_CHOWN", "CAP_KILL"], [])),
])
def test_capability_names_are_recorded_as_docker_records_them(
        add: list[str], drop: list[str], expected: tuple[list[str], list[str]]) -> None:
    assert effective_add_drop(add, drop) == expected


@pytest.mark.quick
def test_all_is_what_pydock_holds_and_more_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A host that took CAP_SYS_RESOURCE from pydock (some CI sandboxes do).
    monkeypatch.setattr(capabilities, "held", lambda: mask(list(CAPABILITIES)) & ~(1 << 24))
    assert "SYS_RESOURCE" not in capabilities.resolve(["ALL"], [])
    with pytest.raises(PydockError, match="capability CAP_SYS_RESOURCE is not available"):
        capabilities.resolve(["CAP_SYS_RESOURCE"], [])


def test_inspect_shows_capabilities_and_security_options_as_docker_does(
        pydock: Pydock) -> None:
    pydock.ok("run", "--name", "plain", "true")
    pydock.ok("run", "--name", "tuned", "--cap-add", "net_admin", "--cap-add", "CAP_SYS_TIME",
              "--cap-drop", "chown", "--cap-drop", "NET_ADMIN", "--security-opt",
              "no-new-privileges", "true")
    keys = ("CapAdd", "CapDrop", "SecurityOpt")
    plain, tuned = (pydock.inspect(name)["HostConfig"] for name in ("plain", "tuned"))
    assert [plain[key] for key in keys] == [None, None, None]
    assert [tuned[key] for key in keys] == [["CAP_NET_ADMIN", "CAP_SYS_TIME"], ["CAP_CHOWN"],
                                            ["no-new-privileges"]]


def test_a_record_from_before_security_options_still_loads(pydock: Pydock) -> None:
    pydock.ok("run", "-d", "--name", "box", "sleep", "60")
    write_legacy_record(pydock.root / "containers" / "box" / "state.json",
                        omit=("cap_add", "cap_drop", "security_opt"))
    host_config = pydock.inspect("box")["HostConfig"]
    assert [host_config[key] for key in ("CapAdd", "CapDrop", "SecurityOpt")] == [None] * 3
    out = pydock.ok("exec", "box", "grep", "-e", "^CapEff", "-e", "^NoNewPrivs",
                    "/proc/self/status")
    assert out.split() == ["CapEff:", f"{DEFAULT_MASK:016x}", "NoNewPrivs:", "0"]


@pytest.mark.parametrize(("options", "message"), [
    (["--cap-add", "NOPE"], "unknown capability: 'NOPE'"),
    (["--cap-drop", "CAP_"], "unknown capability: 'CAP_'"),
    (["--cap-add", ""], "unknown capability: ''"),
    (["--cap-drop", "CAP_ALL"], "unknown capability: 'CAP_ALL'"),
    (["--security-opt", "apparmor=unconfined"], "--security-opt 'apparmor=unconfined' is not "
                                                "supported: pydock has only no-new-privileges"),
    (["--security-opt", "apparmor:unconfined"], "'apparmor:unconfined' is not supported"),
    (["--security-opt", "label=disable"], "'label=disable' is not supported"),
    (["--security-opt", "no-new-privileges=maybe"], "invalid --security-opt "
                                                    "'no-new-privileges=maybe': expected"),
    (["--security-opt", ""], "--security-opt '' is not supported"),
])
def test_bad_security_options_are_one_line_125_and_create_nothing(
        pydock: Pydock, options: list[str], message: str) -> None:
    pydock.refused("run", *options, "true", match=message)
    assert pydock.container_names() == []
    assert storage_entries(pydock.root) == []


# -- no-new-privileges ------------------------------------------------------------------


@pytest.mark.quick
@pytest.mark.parametrize(("options", "expected"), [
    ([], False),
    (["no-new-privileges"], True),
    (["no-new-privileges=true"], True),
    (["no-new-privileges=1"], True),
    (["no-new-privileges:true"], True),
    (["no-new-privileges=false"], False),
    (["no-new-privileges", "no-new-privileges=False"], False),
    (["no-new-privileges=0", "no-new-privileges=T"], True),
])
def test_no_new_privileges_in_dockers_spellings(options: list[str], expected: bool) -> None:
    assert no_new_privileges(options) is expected


@STARTS
@pytest.mark.parametrize(("options", "flag"), [
    ((), "0"),
    (("--security-opt", "no-new-privileges"), "1"),
    (("--security-opt", "no-new-privileges=false"), "0"),
])
def test_no_new_privileges_sets_the_kernels_flag(pydock: Pydock, start: Start,
                                                 options: tuple[str, ...], flag: str) -> None:
    assert status(start, pydock, *options)["NoNewPrivs"] == flag


@STARTS
@pytest.mark.parametrize(("options", "euid"), [
    ((), "0"),
    (("--security-opt", "no-new-privileges"), "65534"),
])
def test_no_new_privileges_stops_a_setuid_binary(pydock: Pydock, tmp_path: Path, start: Start,
                                                 options: tuple[str, ...], euid: str) -> None:
    image = import_setuid_image(pydock, tmp_path)
    run_as_nobody = ("--image", image, "-u", "nobody", *options)
    assert start(pydock, run_as_nobody, SETUID_ID, "-u") == f"{euid}\n"


# -- kernel interfaces ------------------------------------------------------------------


@pytest.mark.parametrize("driver", DRIVERS)
def test_read_only_cannot_be_undone_from_inside(pydock: Pydock, driver: str) -> None:
    result = pydock("run", "--rm", "--read-only", "--storage", driver, "sh", "-c",
                    "mount -o remount,rw / ; touch /escaped")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_mounting_is_not_allowed(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "mount", "-t", "tmpfs", "none", "/tmp")
    assert result.returncode != 0
    assert "permission denied" in result.stderr.lower()


def test_kernel_settings_are_read_only_and_secrets_masked(pydock: Pydock) -> None:
    with open("/proc/sys/vm/swappiness") as f:
        before = f.read()
    result = pydock("run", "--rm", "sh", "-c",
                    "echo 17 > /proc/sys/vm/swappiness; ls /proc/acpi /sys/firmware | wc -w;"
                    " cat /proc/keys | wc -c; cat /proc/interrupts | wc -c")
    assert "Read-only file system" in result.stderr
    assert result.stdout.split() == ["2", "0", "0"]  # the two "dir:" headers only
    with open("/proc/sys/vm/swappiness") as f:
        assert f.read() == before


# -- exec: non-dumpable until it execs ------------------------------------------------

# The container's first process, as root with docker's capabilities: it waits until an
# exec's process is there with the container's capabilities and blocked (the exec is held
# by a failpoint where it reads the container's passwd to find its user, as a FIFO there
# once held it); looks at that process's environment (the host's, inherited from `pydock
# exec`) and descriptors; then ends it with SIGTERM, as a stop before the start would.
PROBE = r"""
echo ready
while :; do
    for status in /proc/[0-9]*/status; do
        grep -qE '^Name:[[:space:]]+(pydock|python)' $status 2>/dev/null || continue
        grep -qE '^CapPrm:[[:space:]]+{mask}' $status \
            && grep -qE '^State:[[:space:]]+S' $status && break 2
    done
    sleep 0.05
done
process=${{status%/status}}
if cat $process/environ > /tmp/environ; then echo environ: read; tr '\0' '\n' < /tmp/environ
else echo environ: refused; fi
if readlink $process/fd/0; then echo fds: read; else echo fds: refused; fi
kill -TERM ${{process#/proc/}}
echo released
exec sleep 60
"""


def test_exec_is_not_dumpable_until_it_runs_the_command(pydock: Pydock) -> None:
    """Until it execs, an exec's process holds what it brought from the host (here: the
    environment `pydock exec` was started with); the container's root, with the same
    uid and capabilities, must not read it through /proc."""
    pydock.ok("run", "-d", "--name", "box", "sh", "-c", PROBE.format(mask=f"{DEFAULT_MASK:016x}"))
    deadline = time.monotonic() + 10
    while "ready" not in pydock.ok("logs", "box") and time.monotonic() < deadline:
        time.sleep(0.05)
    secret = os.urandom(8).hex()
    result = pydock("exec", "box", "echo", "done",
                    env={"HOST_SECRET": secret, "PYDOCK_FAILPOINT": "setup.user-lookup:hang"})
    assert (result.returncode, result.stdout) == (128 + signal.SIGTERM, ""), result.stderr
    log = pydock.ok("logs", "box")
    assert "released" in log
    assert "environ: refused" in log and "fds: refused" in log
    assert secret not in log
