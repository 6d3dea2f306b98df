"""Hostile input through ``pydock run``'s command line: flags refused before anything is
made, values only the image can refuse (the container stays, exited, until rm), edge
values docker accepts, and command lines and environments of 100k that arrive intact.

As in every test_hostile_* file: bad input gets one line on stderr and exit status 125, or
works as in docker; never a traceback. A refused command leaves the storage root as it
found it: helpers.refused_unchanged compares a full listing of it (paths, types, modes,
owners, sizes, contents) before and after. The root is a copy of conftest's primed_root,
which has run one container on every driver, so the store's own directories do not count
as a change; conftest checks after every test that no mount and no container cgroup
survives. The bad-input tests of test_cli_errors, test_state, test_users, test_volumes,
test_cgroups, the test_archive_* files and test_image_transfer are not repeated here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from helpers import assert_works, refused_unchanged

from pydock.testing.cli import Pydock
from pydock.testing.manifest import diff_manifests, manifest

# conftest's pydock fixture, on a copy of its primed root.
pytestmark = pytest.mark.primed


# -- run's flags ----------------------------------------------------------------------------
# Each refused with the root as it was. "SRC" stands for a host path that must stay absent.

LONG = "n" * 300  # longer than any file name may be (255)
# Digits to Unicode, not to the ASCII-only parsers: fullwidth 64 and Arabic-Indic 10.
WIDE_64, ARABIC_10 = "\uff16\uff14", "\u0661\u0660"

BAD_RUN_FLAGS = {
    "env-empty-key-and-value": (["-e", "="], "invalid environment variable '='"),
    "env-bad-after-good": (["-e", "A=1", "-e", "=x"], "invalid environment variable '=x'"),
    "workdir-dot": (["-w", "."], "working directory '.' must be an absolute path"),
    "workdir-climbing": (["-w", "../etc"], "working directory '../etc' must be an absolute"),
    "workdir-tilde": (["-w", "~/x"], "working directory '~/x' must be an absolute path"),
    "user-colon": (["-u", ":"], "invalid user ':'"),
    "user-no-group": (["-u", "a:"], "invalid user 'a:'"),
    "user-no-user": (["-u", ":b"], "invalid user ':b'"),
    "user-uid-2**32": (["-u", "4294967296"], "id 4294967296 is out of range"),
    "user-uid-minus-1-as-unsigned": (["-u", "4294967295"], "id 4294967295 is out of range"),
    "user-gid-2**32": (["-u", "0:4294967296"], "id 4294967296 is out of range"),
    "user-negative": (["-u", "-1"], "invalid user '-1'"),
    "user-negative-gid": (["-u", "0:-1"], "invalid user '0:-1'"),
    "user-name-too-long": (["-u", "u" * 33], "invalid user"),
    "user-unicode": (["-u", "ünï"], "invalid user 'ünï'"),
    "hostname-leading-dash": (["--hostname", "-h"], "invalid hostname '-h'"),
    "hostname-leading-dot": (["--hostname", ".h"], "invalid hostname '.h'"),
    "hostname-unicode": (["--hostname", "hôte"], "invalid hostname 'hôte'"),
    "hostname-control": (["--hostname", "a\x1bb"], "invalid hostname 'a\\x1bb'"),
    "hostname-newline": (["--hostname", "a\nb"], "invalid hostname 'a\\nb'"),
    "hostname-slash": (["--hostname", "a/b"], "invalid hostname 'a/b'"),
    "network-empty": (["--network", ""], "unknown network ''"),
    "network-container": (["--network", "container:x"], "unknown network 'container:x'"),
    "network-upper-case": (["--network", "NONE"], "unknown network 'NONE'"),
    "storage-path-like": (["--storage", "../overlay"], "unknown storage driver '../overlay'"),
    "storage-absolute": (["--storage", "/etc"], "unknown storage driver '/etc'"),
    "storage-upper-case": (["--storage", "Overlay"], "unknown storage driver 'Overlay'"),
    "storage-trailing-space": (["--storage", "overlay "], "unknown storage driver 'overlay '"),
    "image-empty": (["--image", ""], "invalid image reference ''"),
    "image-double-colon": (["--image", "a::b"], "invalid image reference 'a::b'"),
    "image-two-tags": (["--image", "a:b:c"], "invalid image reference 'a:b:c'"),
    "image-path-like": (["--image", "../x"], "invalid image reference '../x'"),
    "image-space": (["--image", "a b"], "invalid image reference 'a b'"),
    # A digest reference is valid (docker's grammar); this one names no image here.
    "image-digest": (["--image", "busybox@sha256:" + "a" * 64], "no such image: busybox@sha256:"),
    "image-digest-short": (["--image", "busybox@sha256:" + "a" * 63], "invalid image reference"),
    "image-leading-dash": (["--image=-x"], "invalid image reference '-x'"),
    "image-too-long": (["--image", "a" * 300], "invalid image reference"),
    "image-unknown-id": (["--image", "sha256:" + "0" * 64], "no such image"),
    "memory-double-unit": (["-m", "64mm"], "invalid memory size '64mm'"),
    "memory-not-ascii-digits": (["-m", f"{WIDE_64}m"], f"invalid memory size '{WIDE_64}m'"),
    "memory-exponent": (["-m", "1e9"], "invalid memory size '1e9'"),
    "memory-hex": (["-m", "0x10"], "invalid memory size '0x10'"),
    "memory-nan": (["-m", "nan"], "invalid memory size 'nan'"),
    "cpus-inf": (["--cpus", "inf"], "invalid number of CPUs 'inf'"),
    "cpus-exponent": (["--cpus", "1e0"], "invalid number of CPUs '1e0'"),
    "cpus-space": (["--cpus", " 1"], "invalid number of CPUs ' 1'"),
    "cpus-not-ascii-digit": (["--cpus", ARABIC_10[0]], f"invalid number of CPUs '{ARABIC_10[0]}'"),
    "pids-empty": (["--pids-limit", ""], "invalid --pids-limit ''"),
    "pids-not-ascii-digits": (["--pids-limit", ARABIC_10], f"invalid --pids-limit '{ARABIC_10}'"),
    "pids-space": (["--pids-limit", " 5"], "invalid --pids-limit ' 5'"),
    "pids-huge": (["--pids-limit", "9" * 30], "is more than the kernel allows"),
    "volume-upper-case-mode": (["-v", "SRC:/data:RO"], "unknown option 'RO'"),
    # Found only when SRC is created, after the container's record: undone with it.
    "volume-source-name-too-long": (["-v", f"SRC/{LONG}:/data"], "File name too long"),
}


@pytest.mark.parametrize(("args", "message"), BAD_RUN_FLAGS.values(), ids=BAD_RUN_FLAGS.keys())
def test_a_bad_run_flag_is_refused_and_leaves_the_root_as_it_was(
        pydock: Pydock, tmp_path: Path, args: list[str], message: str) -> None:
    source = tmp_path / "src"
    args = [arg.replace("SRC", str(source)) for arg in args]
    refused_unchanged(pydock, ["run", "--name", "never", *args, "true"], message)
    assert not source.exists()


# What only the container's own root can tell: refused while the container is set up. As in
# docker, the container then stays, exited, with the reason, until rm (or at once with --rm).
SETUP_FAILURES = {
    "user-not-in-the-image": (["-u", "ghost"], "unable to find user ghost"),
    "group-not-in-the-image": (["-u", "nobody:ghosts"], "unable to find group ghosts"),
    "workdir-is-a-file": (["-w", "/etc/passwd"], "/etc/passwd: File exists"),
    "workdir-under-proc": (["-w", "/proc/none"], "/proc/none: No such file or directory"),
    "workdir-closed-to-the-user": (["-u", "nobody", "-w", "/root"], "/root: Permission denied"),
    "workdir-name-too-long": (["-w", f"/{LONG}"], "File name too long"),
    "volume-destination-name-too-long": (["-v", f"SRC:/{LONG}"], "File name too long"),
}


@pytest.mark.parametrize(("args", "message"), SETUP_FAILURES.values(),
                         ids=SETUP_FAILURES.keys())
def test_what_only_the_image_refuses_fails_at_setup_and_rm_undoes_it(
        pydock: Pydock, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "src").mkdir()
    args = [arg.replace("SRC", str(tmp_path / "src")) for arg in args]
    refused_unchanged(pydock, ["run", "--rm", *args, "true"], message)
    before = manifest(pydock.root)
    refusal = pydock.refused("run", "--name", "failed", *args, "true")
    state = pydock.inspect("failed")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 125)
    assert message in state["Error"] and state["Error"] in refusal
    pydock.ok("rm", "failed")
    assert diff_manifests(before, manifest(pydock.root)) == []


def test_edge_values_docker_accepts_work(pydock: Pydock) -> None:
    run = ["run", "--rm"]
    # An empty -w or -u means "not given": the image's (here none: / and root).
    assert_works(pydock(*run, "-w", "", "-u", "", "sh", "-c", "pwd; id -u"), "/\n0\n")
    # The working directory is cleaned as docker's filepath.Clean does, never climbing
    # above "/", and nothing is made on the way to it.
    assert_works(pydock(*run, "-w", "/made/../here", "sh", "-c", "pwd; test -e /made || echo none"),
                 "/here\nnone\n")
    assert_works(pydock(*run, "-w", "/../../..", "pwd"), "/\n")
    # The largest id there is; 2**32-1 is (uid_t)-1, "no change" to the kernel.
    assert_works(pydock(*run, "-u", "4294967294:4294967294", "sh", "-c", "id -u; id -g"),
                 "4294967294\n4294967294\n")
    # Keys may hold anything but "=", the value anything at all. env, not a shell: a shell
    # passes on only the variables whose names it could use.
    given = ["a=b=c", "with space=1", f"{'K' * 1000}=long key"]
    result = pydock(*run, *[arg for item in given for arg in ("-e", item)], "env")
    assert result.returncode == 0, result.stderr
    assert set(given) <= set(result.stdout.splitlines())
    assert_works(pydock(*run, "--hostname", "h" * 64, "hostname"), "h" * 64 + "\n")


def test_a_command_name_with_a_newline_or_an_escape_is_quoted_on_one_line(
        pydock: Pydock) -> None:
    for command, shown in (("no\nsuch", "no\\nsuch"), ("no\x1b[31m", "no\\u001b[31m"),
                           ("C:\\new", "C:\\\\new")):
        result = pydock("run", "--rm", command)
        assert result.returncode == 127
        assert result.stderr == (f'pydock: exec: "{shown}": executable file not found in '
                                 "$PATH\n")


# -- big arguments and environments, which work ----------------------------------------------


def md5_line(data: str) -> str:
    return f"{hashlib.md5(data.encode()).hexdigest()}  -\n"


def test_a_100k_command_line_of_many_arguments_arrives_intact(pydock: Pydock) -> None:
    args = [f"argument-{number:04d}-" + "y" * 40 for number in range(2000)]
    assert sum(map(len, args)) > 100_000
    result = pydock("run", "--rm", "sh", "-c", 'printf "%s\\n" "$@" | md5sum', "sh", *args)
    assert_works(result, md5_line("".join(f"{arg}\n" for arg in args)))


def test_a_single_100k_argument_arrives_intact(pydock: Pydock) -> None:
    argument = "".join(chr(ord("a") + number % 26) for number in range(100_000))
    result = pydock("run", "--rm", "sh", "-c", 'printf %s "$1" | md5sum', "sh", argument)
    assert_works(result, md5_line(argument))


def test_a_thousand_environment_variables_arrive_intact(pydock: Pydock) -> None:
    env = [f"VAR{number:04d}=value {number} = {'z' * (number % 50)}" for number in range(1000)]
    flags = [arg for item in env for arg in ("-e", item)]
    result = pydock("run", "--rm", *flags, "sh", "-c", "env | grep ^VAR | sort | md5sum")
    assert_works(result, md5_line("".join(f"{item}\n" for item in env)))


def test_a_100k_environment_value_arrives_intact(pydock: Pydock) -> None:
    value = "".join(chr(ord("A") + number % 26) for number in range(100_000))
    result = pydock("run", "--rm", "-e", f"BIG={value}", "sh", "-c", 'printf %s "$BIG" | md5sum')
    assert_works(result, md5_line(value))
