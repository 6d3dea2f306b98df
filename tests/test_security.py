"""docker's security defaults: capabilities, masked and read-only kernel paths."""

from __future__ import annotations

import pytest
from conftest import DRIVERS

from pydock.core.capabilities import DOCKER_DEFAULT, mask
from pydock.testing.cli import Pydock

DEFAULT_MASK = mask(DOCKER_DEFAULT)


def capability_sets(pydock: Pydock, *run_args: str) -> dict[str, int]:
    out = pydock.ok("run", "--rm", *run_args, "grep", "^Cap", "/proc/self/status")
    return {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}


def test_root_in_the_container_has_dockers_capabilities_only(pydock: Pydock) -> None:
    assert capability_sets(pydock) == {"CapInh": 0, "CapPrm": DEFAULT_MASK,
                                       "CapEff": DEFAULT_MASK, "CapBnd": DEFAULT_MASK,
                                       "CapAmb": 0}


def test_a_non_root_user_has_no_capabilities(pydock: Pydock) -> None:
    sets = capability_sets(pydock, "-u", "nobody")
    assert (sets["CapPrm"], sets["CapEff"], sets["CapBnd"]) == (0, 0, DEFAULT_MASK)


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
