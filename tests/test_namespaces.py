"""Every namespace is really new, the old root is really gone, /proc /dev /sys are set up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import DRIVERS, busybox_rootfs

from pydock.core.runtime.devices import DEFAULT_DEVICES
from pydock.core.runtime.rootfs import MASKED_PATHS, READ_ONLY_PATHS
from pydock.testing.cli import Pydock, mounts_under
from pydock.testing.tar import tree, write_tar

NAMESPACES = ("mnt", "uts", "ipc", "pid", "net")


def test_each_namespace_differs_from_the_hosts(pydock: Pydock) -> None:
    script = "; ".join(f"echo {ns}=$(readlink /proc/self/ns/{ns})" for ns in NAMESPACES)
    out = pydock.ok("run", "--rm", "sh", "-c", script)
    inside = dict(line.split("=", 1) for line in out.splitlines())
    for ns in NAMESPACES:
        assert inside[ns] != os.readlink(f"/proc/self/ns/{ns}"), ns


def test_network_host_keeps_the_hosts_network_namespace(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "--network", "host", "readlink", "/proc/self/ns/net")
    assert out.strip() == os.readlink("/proc/self/ns/net")
    listed = pydock.ok("run", "--rm", "--network", "host", "ls", "/sys/class/net").split()
    assert sorted(listed) == sorted(os.listdir("/sys/class/net"))


def test_private_network_has_only_lo_and_it_is_up(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "sh", "-c", "ls /sys/class/net; cat /sys/class/net/lo/flags")
    names, flags = out.split()[:-1], out.split()[-1]
    assert names == ["lo"]
    assert int(flags, 16) & 0x1, "IFF_UP"


def test_hostname_is_the_container_name_unless_given(pydock: Pydock) -> None:
    assert pydock.ok("run", "--rm", "-name", "box-7", "hostname") == "box-7\n"
    assert pydock.ok("run", "--rm", "--hostname", "other.example", "hostname") == \
        "other.example\n"
    assert os.uname().nodename not in ("box-7", "other.example")


def test_the_command_runs_as_pid_1_and_sees_only_its_own_processes(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    pid, count = out.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, ls and grep: nothing of the host


@pytest.mark.parametrize("driver", DRIVERS)
def test_mount_table_holds_only_container_paths(pydock: Pydock, driver: str) -> None:
    out = pydock.ok("run", "--rm", "--storage", driver, "cat", "/proc/self/mountinfo")
    mount_points = {line.split()[4] for line in out.splitlines()}
    base = {"/", "/dev", "/dev/mqueue", "/dev/pts", "/dev/shm", "/proc", "/sys"}
    # The default devices are the host's nodes, each bind mounted (test_devices.py).
    base |= {f"/dev/{name}" for name in DEFAULT_DEVICES}
    # The container's own /etc files, bind mounted from its record (test_etc_files.py).
    base |= {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf"}
    masks = {f"/{path}" for path in (*MASKED_PATHS, *READ_ONLY_PATHS)}
    assert base <= mount_points <= base | masks


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_old_root_is_unreachable(pydock: Pydock, driver: str) -> None:
    # No mount inside the container may expose the root directory of the host's root
    # filesystem: that would be the whole host, reachable (the tutorials' /.old).
    host_mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    host_root = next(line.split() for line in host_mounts if line.split()[4] == "/")
    out = pydock.ok("run", "--rm", "--storage", driver, "cat", "/proc/self/mountinfo")
    for line in out.splitlines():
        fields = line.split()
        assert not (fields[2] == host_root[2] and fields[3] == "/"), line
    sentinel = pydock.root / "host-only"
    sentinel.write_text("host")
    result = pydock("run", "--rm", "--storage", driver, "sh", "-c",
                    f"cat {sentinel} || ls /.old /.pivot_root 2>&1")
    assert "host" not in result.stdout.split()


def test_dev_has_the_standard_nodes_and_nothing_of_the_hosts(pydock: Pydock) -> None:
    out = pydock.ok("run", "--rm", "sh", "-c",
                    "ls /dev; stat -c '%n %t:%T %a' /dev/null /dev/zero /dev/urandom /dev/tty;"
                    " readlink /dev/ptmx; readlink /dev/fd; echo x > /dev/null && echo writable")
    lines = out.splitlines()
    assert set(lines).issuperset(
        {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx",
         "fd", "stdin", "stdout", "stderr"})
    assert "/dev/null 1:3 666" in lines
    assert "/dev/zero 1:5 666" in lines
    assert "/dev/urandom 1:9 666" in lines
    assert "/dev/tty 5:0 666" in lines
    assert "pts/ptmx" in lines and "/proc/self/fd" in lines
    assert "writable" in lines
    assert "vda" not in out.split() and "sda" not in out.split()


def test_sys_is_read_only_and_proc_is_the_containers(pydock: Pydock) -> None:
    result = pydock("run", "--rm", "sh", "-c", "touch /sys/kernel/x; cat /proc/1/cmdline; true")
    assert "Read-only file system" in result.stderr
    assert result.stdout.startswith("sh")


@pytest.mark.parametrize("path", ["proc", "dev", "sys"])
def test_a_kernel_filesystem_symlink_in_the_image_is_refused(pydock: Pydock, tmp_path: Path,
                                                            path: str) -> None:
    # An image whose /proc (or /dev, /sys) points elsewhere must never make pydock mount
    # outside its root; runc refuses the same.
    rootfs = busybox_rootfs(tmp_path / "evil")
    (rootfs / path).rmdir()
    (rootfs / path).symlink_to("/tmp")
    write_tar(tmp_path / "evil.tar", tree(rootfs))
    pydock.ok("image", "import", str(tmp_path / "evil.tar"), "evil")
    pydock.refused("run", "--rm", "--image", "evil", "true",
                   match=f"refusing to mount on /{path}: it is a symlink in the image")
    assert mounts_under(Path("/tmp")) == []
