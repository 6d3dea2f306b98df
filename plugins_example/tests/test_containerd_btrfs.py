"""The btrfs driver as containerd's snapshotter: ``pydock snapshotter serve --storage btrfs``
on a loopback btrfs, a private containerd (:mod:`pydock.testing.containerd`) running
containers on it through ``ctr``, with their files checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from pydock.testing.cli import Pydock
from pydock.testing.containerd import have_containerd, private_containerd

pytestmark = pytest.mark.skipif(not have_containerd(), reason="containerd is not installed "
                                "(scripts/setup.sh installs Debian's)")

IMAGE = "docker.io/library/derived:1"


def test_containerd_runs_containers_on_btrfs_subvolumes(pydock: Pydock, btrfs: Path,
                                                        tmp_path: Path) -> None:
    # An image of two layers, the second deleting a file of the first, saved by pydock.
    pydock.ok("run", "--storage", "btrfs", "--name", "w", "sh", "-c",
              "rm /etc/group && echo added > /added.txt")
    pydock.ok("commit", "w", "derived:1")
    pydock.ok("rm", "w")
    archive = tmp_path / "derived.tar"
    pydock.ok("image", "save", "-o", str(archive), "derived:1")

    root = btrfs / "snapshots"
    with private_containerd({"btrfs": root}) as ctd:
        ctd.ctr("images", "import", "--snapshotter", "pydock-btrfs", str(archive))

        def run(name: str, script: str) -> str:
            return ctd.ctr("run", "--rm", "--snapshotter", "pydock-btrfs", IMAGE, name,
                           "sh", "-c", script).stdout

        check = "cat /added.txt; head -1 /etc/passwd; test -e /etc/group || echo gone"
        assert run("c1", check) == "added\nroot:x:0:0:root:/root:/bin/sh\ngone\n"
        run("c2", "echo scribbled > /added.txt && touch /new")
        assert run("c3", f"{check}; test -e /new || echo no-new") == \
            "added\nroot:x:0:0:root:/root:/bin/sh\ngone\nno-new\n"
        # A snapshot is a subvolume, handed to containerd as a bind mount.
        listed = [line.split() for line in ctd.ctr(
            "snapshots", "--snapshotter", "pydock-btrfs", "ls").stdout.splitlines()[1:]]
        parents = {row[1] for row in listed if len(row) == 3}
        [top] = [row[0] for row in listed if row[0] not in parents]
        mounts = json.loads(ctd.ctr("snapshots", "--snapshotter", "pydock-btrfs", "prepare",
                                    "--mounts", "probe", top).stdout)
        # containerd (Go's mount.All) makes a bind mount only of a "bind" or "rbind" option:
        # the type alone, as pydock's driver contract allows it, fails with ENODEV.
        assert [m["Type"] for m in mounts] == ["bind"], mounts
        assert {"bind", "rbind"} & set(mounts[0]["Options"]), mounts
        # The bind's source is the rootfs directory at the top of the snapshot's subvolume.
        subvolume = subprocess.run(["btrfs", "subvolume", "show",
                                    str(Path(mounts[0]["Source"]).parent)],
                                   capture_output=True, text=True)
        assert subvolume.returncode == 0, subvolume.stderr
        ctd.ctr("snapshots", "--snapshotter", "pydock-btrfs", "rm", "probe")
