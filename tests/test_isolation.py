"""One image, many containers: each driver gives a private root and never writes the image.

The bind driver is the documented exception: its containers share one root
(the baseline that shows why overlay exists), but even it leaves the image's
layer untouched.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from helpers import DRIVERS

from pydock.testing.cli import Pydock
from pydock.testing.manifest import diff_manifests, manifest

WRITE = ("mkdir /test && echo secret > /test/file && echo changed > /etc/group "
         "&& rm /etc/passwd && chmod 700 /bin")
LOOK = ("test -e /test && echo test-present; cat /etc/group; stat -c 'bin=%a' /bin; "
        "test -e /etc/passwd && echo passwd-present")


@pytest.mark.parametrize(("first", "second"),
                         [p for p in itertools.product(DRIVERS, repeat=2) if p != ("bind", "bind")])
def test_changes_of_one_container_are_invisible_to_another(pydock: Pydock, first: str,
                                                           second: str) -> None:
    pydock.ok("run", "--storage", first, "-name", "hello1", "sh", "-c", WRITE)
    out = pydock.ok("run", "--storage", second, "-name", "hello2", "sh", "-c", LOOK)
    assert "test-present" not in out
    assert "changed" not in out
    assert "bin=755" in out.split()
    assert "passwd-present" in out


def test_bind_containers_share_one_root_that_is_not_the_image(pydock: Pydock) -> None:
    pydock.ok("run", "--storage", "bind", "-name", "writer", "sh", "-c", "echo shared > /note")
    assert pydock.ok("run", "--storage", "bind", "-name", "reader", "cat", "/note") == "shared\n"
    overlay = pydock("run", "--rm", "--storage", "overlay", "cat", "/note")
    assert overlay.returncode != 0


def test_bind_shared_root_is_deleted_with_its_last_container(pydock: Pydock) -> None:
    pydock.ok("run", "--storage", "bind", "-name", "b1", "true")
    pydock.ok("run", "--storage", "bind", "-name", "b2", "true")
    shared = Path(pydock.inspect("b1")["GraphDriver"]["Data"]["SharedDir"])
    pydock.ok("rm", "b1")
    assert shared.is_dir()
    pydock.ok("rm", "b2")
    assert not shared.parent.exists()


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_image_is_never_written(pydock: Pydock, image_root: Path, driver: str) -> None:
    before = manifest(image_root)
    pydock.ok("run", "--storage", driver, "-name", "writer", "sh", "-c", WRITE)
    pydock.ok("rm", "writer")
    assert diff_manifests(before, manifest(image_root)) == []


@pytest.mark.parametrize("driver", DRIVERS)
def test_rm_leaves_no_directory_behind(pydock: Pydock, driver: str) -> None:
    pydock.ok("run", "--storage", driver, "-name", "temp", "sh", "-c", WRITE)
    data = pydock.inspect("temp")["GraphDriver"]["Data"]
    merged = Path(data["MergedDir"])
    assert merged.is_dir()
    pydock.ok("rm", "temp")
    assert not merged.parent.exists()
    assert not (pydock.root / "containers" / "temp").exists()
