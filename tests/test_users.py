"""``-u`` and the image's ``User``: resolved in the image's own passwd and group files."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import busybox_rootfs

from pydock.core.errors import PydockError
from pydock.core.runtime.users import Credentials, resolve
from pydock.testing.cli import Pydock
from pydock.testing.tar import tree, write_tar

PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "app:x:1000:1000:App:/home/app:/bin/sh\n"
          "nohome:x:1001:1001::::\n")
GROUP = "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n"


@pytest.mark.quick
@pytest.mark.parametrize(("spec", "expected"), [
    ("app", Credentials(1000, 1000, (1000, 10, 29), "/home/app")),
    ("1000", Credentials(1000, 1000, (1000, 10, 29), "/home/app")),
    ("app:wheel", Credentials(1000, 10, (10,), "/home/app")),
    ("app:77", Credentials(1000, 77, (77,), "/home/app")),
    ("4242", Credentials(4242, 0, (0,), "/")),
    ("4242:4242", Credentials(4242, 4242, (4242,), "/")),
    ("0", Credentials(0, 0, (0,), "/root")),
    ("nohome", Credentials(1001, 1001, (1001,), "/")),
])
def test_user_specs_resolve_like_docker(spec: str, expected: Credentials) -> None:
    assert resolve(spec, PASSWD, GROUP) == expected


@pytest.mark.quick
@pytest.mark.parametrize(("spec", "message"), [
    ("ghost", "unable to find user ghost"),
    ("app:ghosts", "unable to find group ghosts"),
])
def test_unknown_names_are_errors(spec: str, message: str) -> None:
    with pytest.raises(PydockError, match=message):
        resolve(spec, PASSWD, GROUP)


@pytest.mark.quick
def test_no_passwd_file_still_allows_numeric_ids() -> None:
    assert resolve("5:6", "", "") == Credentials(5, 6, (6,), "/")


def test_run_as_a_user_by_name_and_by_number(pydock: Pydock) -> None:
    assert pydock.ok("run", "--rm", "-u", "nobody", "sh", "-c", "id -u; id -g; echo $HOME") == \
        "65534\n65534\n/nonexistent\n"
    assert pydock.ok("run", "--rm", "--user", "1234:5", "sh", "-c", "id -u; id -g") == \
        "1234\n5\n"


def test_the_user_cannot_write_roots_files(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "-u", "nobody", "touch", "/etc/passwd")
    assert result.returncode == 1 and "Permission denied" in result.stderr


def test_the_workdir_is_created_by_root_then_entered_as_the_user(pydock: Pydock) -> None:
    assert pydock.ok("run", "--rm", "-u", "nobody", "-w", "/new/place", "pwd") == "/new/place\n"


@pytest.mark.parametrize(("user", "code", "message"), [
    ("ghost", 125, "unable to find user ghost: no matching entries in passwd file"),
    ("a b", 125, "invalid user 'a b'"),
    ("1:2:3", 125, "invalid user"),
    ("99999999999", 125, "out of range"),
])
def test_bad_users_are_one_line_125(pydock: Pydock, user: str, code: int, message: str) -> None:
    pydock.refused("run", "--rm", "-u", user, "true", code=code, match=message)


def test_a_symlinked_passwd_is_resolved_inside_the_root(pydock: Pydock, tmp_path: Path) -> None:
    # An absolute, ..-laden symlink: resolved on the host it would name the host's files.
    rootfs = busybox_rootfs(tmp_path / "rootfs")
    (rootfs / "etc" / "passwd").symlink_to("/../../../etc/image-users")
    (rootfs / "etc" / "image-users").write_text("zed:x:7:7::/z:/bin/sh\n")
    write_tar(tmp_path / "linked.tar", tree(rootfs))
    pydock.ok("image", "import", str(tmp_path / "linked.tar"), "linked")
    assert pydock.ok("run", "--rm", "--image", "linked", "-u", "zed", "id", "-u") == "7\n"
    result = pydock("run", "--rm", "--image", "linked", "-u", "root", "true")
    assert "unable to find user root" in result.stderr
