"""Real programs still work under the default isolation (the seccomp filter, the cgroup
namespace, the device allowlist, relayed stdio): Debian's python3, gcc and dpkg/apt tools,
taken from the host's /usr, read-only, on a busybox root (/lib, /lib64 and /sbin are the
merged-/usr symlinks Debian has).

A filter that refuses what glibc, Python's threads and subprocesses, a compiler driver
that forks cc1, as and ld, or dpkg's file handling needs, breaks every real image; these
are the cheapest real programs at hand, without a registry or a debootstrap.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import busybox_binary

from pydock.testing.cli import Pydock
from pydock.testing.tar import tree, write_tar

HOST_TOOLS = ["-v", "/usr:/usr:ro", "-v", "/etc:/etc:ro", "-v", "/var/lib/dpkg:/var/lib/dpkg:ro",
              "-e", "PATH=/usr/local/bin:/usr/bin:/bin"]
PYTHON = ("import json, sqlite3, ssl, subprocess, threading\n"
          "results = []\n"
          "worker = threading.Thread(target=lambda: results.append(subprocess.run("
          "['echo', 'child'], capture_output=True, text=True).stdout.strip()))\n"
          "worker.start(); worker.join()\n"
          "db = sqlite3.connect(':memory:'); db.execute('create table t (x)')\n"
          "print(json.dumps(results), ssl.OPENSSL_VERSION.split()[0])\n")
PROGRAM = "#include <stdio.h>\nint main(void) { puts(\"compiled\"); return 0; }\n"


@pytest.fixture
def host_tools(pydock: Pydock, tmp_path: Path) -> str:
    if shutil.which("gcc") is None:
        pytest.fail("gcc must be installed (the README's setup installs it)")
    rootfs = tmp_path / "host-tools.d"
    for sub in ("bin", "etc", "tmp", "proc", "sys", "dev", "usr", "var/lib/dpkg"):
        (rootfs / sub).mkdir(parents=True)
    shutil.copy2(busybox_binary(), rootfs / "bin" / "busybox")
    (rootfs / "bin" / "sh").symlink_to("busybox")
    for link in ("lib", "lib64", "sbin"):
        (rootfs / link).symlink_to(f"usr/{link}")
    (rootfs / "tmp").chmod(0o1777)
    pydock.ok("image", "import", str(write_tar(tmp_path / "host-tools.tar", tree(rootfs))),
              "host-tools")
    return "host-tools"


@pytest.mark.parametrize("user", ["", "65534"])
def test_python_gcc_and_dpkg_work_in_a_container(pydock: Pydock, host_tools: str,
                                                 user: str) -> None:
    flags = ["-u", user] if user else []
    script = ("python3 -c \"$PY\" && printf '%s' \"$C\" > /tmp/p.c && gcc -o /tmp/p /tmp/p.c "
              "&& /tmp/p && dpkg-query -W -f '${Package}\\n' dpkg && apt-config dump | head -n 1")
    out = pydock.ok("run", "--rm", *flags, *HOST_TOOLS, "-e", f"PY={PYTHON}", "-e",
                    f"C={PROGRAM}", "--image", host_tools, "sh", "-c", script)
    lines = out.splitlines()
    assert lines[0].startswith('["child"] OpenSSL'), out
    assert lines[1:3] == ["compiled", "dpkg"], out
    assert lines[3].startswith("APT "), out


def test_python_works_through_exec(pydock: Pydock, host_tools: str) -> None:
    pydock.ok("run", "-d", "-name", "tools", *HOST_TOOLS, "--image", host_tools, "sleep", "600")
    try:
        out = pydock.ok("exec", "tools", "python3", "-c", PYTHON)
        assert out.startswith('["child"] OpenSSL'), out
    finally:
        pydock("rm", "-f", "tools")


def test_python_gets_a_terminal_through_exec_t(pydock: Pydock, host_tools: str) -> None:
    pydock.ok("run", "-d", "-name", "tools", *HOST_TOOLS, "--image", host_tools, "sleep", "600")
    try:
        out = pydock.ok("exec", "-t", "tools", "python3", "-c", "import os; print(os.isatty(1))")
        assert out.strip() == "True", out
    finally:
        pydock("rm", "-f", "tools")
