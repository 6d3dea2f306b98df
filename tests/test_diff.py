"""``pydock diff``: the same A/C/D lines from every driver, as docker prints them."""

from __future__ import annotations

import os

import pytest
from helpers import DRIVERS

from pydock.core.containers.lifecycle import Containers
from pydock.core.runtime.mounted import in_container_root
from pydock.testing.cli import Pydock

CHANGES = ("mkdir /new && echo x > /new/f && echo y >> /etc/passwd && rm /etc/group"
           " && rm -r /usr/sbin && mkdir /usr/sbin && touch /usr/sbin/only"
           " && ln -sf /nowhere /bin/true && chmod 750 /root && mknod /dev-node c 1 3")


@pytest.mark.parametrize("driver", DRIVERS)
def test_diff_lists_added_changed_and_deleted_paths(pydock: Pydock, driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "changer", "sh", "-c", CHANGES)
    lines = pydock.ok("diff", "changer").splitlines()
    deleted_sbin = {line for line in lines if line.startswith("D /usr/sbin/")}
    assert "D /usr/sbin/chroot" in deleted_sbin
    assert [line for line in lines if line not in deleted_sbin] == [
        "C /bin", "C /bin/true", "A /dev-node", "C /etc", "D /etc/group", "C /etc/passwd",
        "A /new", "A /new/f", "C /root", "C /usr", "C /usr/sbin", "A /usr/sbin/only"]


def test_every_driver_reports_the_same_changes(pydock: Pydock) -> None:
    outputs = {}
    for driver in DRIVERS:
        pydock.ok("run", "--storage", driver, "--name", driver, "sh", "-c", CHANGES)
        outputs[driver] = pydock.ok("diff", driver)
    assert outputs["overlay"] == outputs["copy"] == outputs["bind"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_unchanged_container_has_an_empty_diff(pydock: Pydock, driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "idle", "true")
    assert pydock.ok("diff", "idle") == ""


def test_diff_of_an_unknown_container_is_one_line_125(pydock: Pydock) -> None:
    assert pydock.refused("diff", "ghost") == "no such container: ghost"


@pytest.mark.parametrize("driver", DRIVERS)
def test_a_file_replaced_by_a_directory_reports_what_it_holds(pydock: Pydock,
                                                             driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "swap", "sh", "-c",
              "rm /etc/group && mkdir /etc/group && echo in > /etc/group/inner")
    assert pydock.ok("diff", "swap").splitlines() == ["C /etc", "C /etc/group",
                                                      "A /etc/group/inner"]


@pytest.mark.parametrize("driver", DRIVERS)
def test_an_xattr_only_change_is_a_change(pydock: Pydock, driver: str) -> None:
    # The default image has no setfattr: label the file from the host side, through the
    # container's own mounts, as a process inside it would.
    pydock.ok("run", "--storage", driver, "--name", "labelled", "true")
    containers = Containers(pydock.root)
    record = containers.state.load("labelled")
    storage = containers.driver(driver)
    in_container_root(str(storage.rootfs_dir(record.id)),
                      storage.mounts(record.id, containers.images.layer_paths(record.layers)),
                      lambda root: os.setxattr(f"{root}/etc/hosts", "user.tag", b"x"))
    assert pydock.ok("diff", "labelled").splitlines() == ["C /etc", "C /etc/hosts"]
