"""A container's /etc/hostname, /etc/hosts and /etc/resolv.conf (issue 13).

Kept in the container's record and bind mounted, as docker does: right content, written
through to the record, never in the container's layer, so never in ``diff``, ``commit`` or
``export``; images without /etc, or with a symlink or a FIFO where a file is mounted, are
handled inside the container's root.
"""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest
from helpers import DRIVERS, busybox_rootfs

from pydock.testing.cli import Pydock
from pydock.testing.tar import tree, write_tar

ETC = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf")


def host_nameservers() -> list[str]:
    return [line.split()[1] for line in Path("/etc/resolv.conf").read_text().splitlines()
            if line.startswith("nameserver ") and len(line.split()) > 1]


def show(pydock: Pydock, *args: str) -> str:
    return pydock.ok("run", *args, "sh", "-c",
                     "for f in /etc/hostname /etc/hosts /etc/resolv.conf; do "
                     "echo \"== $f\"; cat $f; done")


def section(output: str, path: str) -> str:
    """The file's content, with exactly one newline at its end."""
    return output.split(f"== {path}\n", 1)[1].split("\n== ", 1)[0].rstrip("\n") + "\n"


def import_image(pydock: Pydock, tmp_path: Path, name: str, change_etc: object) -> None:
    """The busybox image, its /etc changed by ``change_etc(etc_dir)``."""
    root = busybox_rootfs(tmp_path / f"{name}.d")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    change_etc(root / "etc")  # type: ignore[operator]
    tarball = write_tar(tmp_path / f"{name}.tar", tree(root))
    pydock.ok("image", "import", str(tarball), name)


def test_the_three_files_say_what_docker_s_do(pydock: Pydock) -> None:
    out = show(pydock, "--name", "web", "--network", "none")
    assert section(out, "/etc/hostname") == "web\n"
    hosts = section(out, "/etc/hosts")
    assert "127.0.0.1\tlocalhost" in hosts and "::1\tlocalhost" in hosts
    assert "\tweb\n" in hosts  # the container's hostname resolves
    servers = [line.split()[1] for line in section(out, "/etc/resolv.conf").splitlines()
               if line.startswith("nameserver ")]
    reachable = [s for s in host_nameservers() if not s.startswith("127.") and ":" not in s]
    assert servers == (reachable or ["8.8.8.8", "8.8.4.4"])


def test_the_container_s_names_resolve_inside(pydock: Pydock) -> None:
    out = pydock.ok("run", "--network", "none", "--hostname", "box", "sh", "-c",
                    "ping -c1 -W1 localhost >/dev/null && ping -c1 -W1 box >/dev/null "
                    "&& echo resolved")
    assert out == "resolved\n"


def test_dns_dns_search_and_add_host(pydock: Pydock) -> None:
    out = show(pydock, "--name", "c", "--network", "none", "--dns", "192.0.2.53",
               "--dns", "2001:db8::53", "--dns-search", "example.com",
               "--add-host", "db:192.0.2.7", "--add-host", "v6:2001:db8::7")
    resolv = section(out, "/etc/resolv.conf")
    assert "nameserver 192.0.2.53\nnameserver 2001:db8::53\n" in resolv
    assert "search example.com\n" in resolv
    hosts = section(out, "/etc/hosts")
    assert "192.0.2.7\tdb\n" in hosts and "2001:db8::7\tv6\n" in hosts
    info = pydock.inspect("c")
    assert info["HostConfig"]["Dns"] == ["192.0.2.53", "2001:db8::53"]
    assert info["HostConfig"]["DnsSearch"] == ["example.com"]
    assert info["HostConfig"]["ExtraHosts"] == ["db:192.0.2.7", "v6:2001:db8::7"]


def test_inspect_names_the_files_in_the_record(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "c", "--network", "none", "true")
    info = pydock.inspect("c")
    record = pydock.root / "containers" / "c"
    assert info["ResolvConfPath"] == str(record / "resolv.conf")
    assert info["HostsPath"] == str(record / "hosts")
    assert info["HostnamePath"] == str(record / "hostname")
    assert Path(info["HostnamePath"]).read_text() == "c\n"
    assert info["HostConfig"]["Dns"] == [] and info["HostConfig"]["ExtraHosts"] is None
    pydock.ok("rm", "c")
    assert not record.exists()


def test_on_the_host_s_network_the_host_s_hostname_and_resolv_conf(pydock: Pydock) -> None:
    out = show(pydock, "--network", "host")
    assert section(out, "/etc/hostname") == os.uname().nodename + "\n"
    assert section(out, "/etc/resolv.conf") == Path("/etc/resolv.conf").read_text().rstrip(
        "\n") + "\n"
    assert section(out, "/etc/hosts").startswith(Path("/etc/hosts").read_text().rstrip("\n"))
    assert pydock.ok("run", "--network", "host", "hostname") == os.uname().nodename + "\n"


@pytest.mark.parametrize("driver", DRIVERS)
def test_writes_go_to_the_record_never_into_diff_commit_or_export(
        pydock: Pydock, tmp_path: Path, driver: str) -> None:
    pydock.ok("run", "--storage", driver, "--name", "c", "--network", "none", "sh", "-c",
              "echo 10.9.9.9 extra >> /etc/hosts && echo x > /etc/hostname")
    assert "10.9.9.9 extra" in (pydock.root / "containers/c/hosts").read_text()
    assert pydock.ok("diff", "c") == ""
    pydock.ok("commit", "c", "committed")
    layer = json.loads(pydock.ok("image", "inspect", "committed"))["RootFS"]["Layers"][-1]
    diff = pydock.root / "layers" / layer.removeprefix("sha256:") / "diff"
    assert sorted(os.listdir(diff)) == []
    pydock.ok("export", "c", "-o", str(tmp_path / "c.tar"))
    with tarfile.open(tmp_path / "c.tar") as tar:
        names = {name.lstrip("./") for name in tar.getnames()}
    # The default image has /etc/hosts of its own: that one, unchanged, is exported.
    assert "etc/hostname" not in names and "etc/resolv.conf" not in names


def test_a_change_of_the_container_s_own_in_etc_still_shows(pydock: Pydock) -> None:
    pydock.ok("run", "--name", "c", "--network", "none", "sh", "-c", "echo 1 > /etc/mine")
    assert pydock.ok("diff", "c").splitlines() == ["C /etc", "A /etc/mine"]


def test_an_image_without_etc(pydock: Pydock, tmp_path: Path) -> None:
    import_image(pydock, tmp_path, "noetc", lambda etc: [os.unlink(etc / "passwd"),
                                                          etc.rmdir()])
    out = pydock.ok("run", "--name", "c", "--image", "noetc", "--network", "none",
                    "cat", "/etc/hostname")
    assert out == "c\n"
    assert pydock.ok("diff", "c") == ""
    pydock.ok("export", "c", "-o", str(tmp_path / "c.tar"))
    with tarfile.open(tmp_path / "c.tar") as tar:
        assert not [name for name in tar.getnames() if name.lstrip("./").startswith("etc")]


def test_a_symlink_at_resolv_conf_stays_inside_the_root(pydock: Pydock, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # Absolute and climbing: both resolve inside the container's root, never on the host.
    import_image(pydock, tmp_path, "symlinked", lambda etc: (
        etc / "resolv.conf").symlink_to(f"/../../../..{outside}/resolv.conf"))
    import_image(pydock, tmp_path, "todir", lambda etc: (etc / "hosts").symlink_to(
        "../../../../../../../tmp"))
    out = pydock.ok("run", "--image", "symlinked", "--network", "none", "--dns",
                    "192.0.2.1", "cat", "/etc/resolv.conf")
    assert "nameserver 192.0.2.1" in out
    assert os.listdir(outside) == []
    # /etc/hosts -> /tmp: a directory is no place for a file; refused, nothing mounted.
    assert "hosts" in pydock.refused("run", "--image", "todir", "--network", "none",
                                     "true", code=125)


def test_a_fifo_at_a_mount_point_is_covered_never_opened(pydock: Pydock,
                                                         tmp_path: Path) -> None:
    import_image(pydock, tmp_path, "fifo", lambda etc: [os.mkfifo(etc / "resolv.conf"),
                                                         os.mkfifo(etc / "hostname")])
    out = pydock.ok("run", "--name", "c", "--image", "fifo", "--network", "none", "cat",
                    "/etc/hostname")
    assert out == "c\n"


@pytest.mark.parametrize(("flag", "value"), [
    ("--dns", "not-an-ip"), ("--dns", "1.2.3"), ("--add-host", "nohost"),
    ("--add-host", "h:not-an-ip"), ("--add-host", "-bad:1.2.3.4"),
    ("--dns-search", "bad domain"), ("--network", "nonesuch"),
])
def test_bad_network_flags_are_refused_leaving_nothing(pydock: Pydock, flag: str,
                                                       value: str) -> None:
    pydock.refused("run", "--name", "c", flag, value, "true")
    assert pydock.ok("ps", "-a", "--format", "json").strip() in ("", "[]")
    assert not (pydock.root / "containers" / "c").exists()
