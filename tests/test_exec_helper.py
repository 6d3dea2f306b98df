"""The container's last exec goes through pydock's exec helper, from a sealed memfd, so that
no process in a container can reach pydock's host interpreter (CVE-2019-5736).

The attack, end to end: an image whose command is a script with ``#!/proc/self/exe``. Were
pydock's process to exec it directly, the kernel would start pydock's own binary, the host's
Python, as the script's interpreter, inside the container (the image brings the few stdlib
files Python needs to start). The script keeps an fd to /proc/self/exe and hands it to a
probe that waits until no pydock process runs the binary any more (ETXTBSY until then), then
writes it. The test runs pydock on a private copy of the interpreter and kills the monitor,
as an admin's `kill` or a crash would.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import busybox_rootfs
from probes import build_probe

from pydock.core.runtime import sealed_exec
from pydock.testing.cli import Pydock
from pydock.testing.tar import tree, write_tar

REPOSITORY = Path(__file__).resolve().parent.parent
ATTACK = """#!/proc/self/exe
# Python, run by the kernel as this script's interpreter: the binary of whoever exec'd it.
import os
fd = os.open("/proc/self/exe", os.O_RDONLY)
os.set_inheritable(fd, True)
if os.fork() == 0:
    os.execv("/probes/rewrite_exe", ["rewrite_exe", str(fd), "/out/result"])
os.execv("/bin/sleep", ["sleep", "600"])
"""


def test_committed_helpers_are_built_from_their_source(tmp_path: Path) -> None:
    subprocess.run(["bash", str(REPOSITORY / "scripts" / "build-exec-helper.sh"), str(tmp_path)],
                   check=True)
    for machine in ("x86_64", "aarch64"):
        built = (tmp_path / machine).read_bytes()
        assert built == Path(sealed_exec.helper_path(machine)).read_bytes(), (
            f"core/runtime/exec_helper/{machine} is stale: run scripts/build-exec-helper.sh")


@pytest.mark.quick
def test_the_helper_does_nothing_unless_pydock_runs_it(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text(f"#!{sealed_exec.helper_path()}\n")
    script.chmod(0o755)
    canary = tmp_path / "canary"
    # As a script's interpreter its argv is [helper, script, ...]: it must not exec them.
    result = subprocess.run([str(script), "/bin/touch", "touch", str(canary)])
    assert result.returncode == sealed_exec.EXIT_NOT_EXECUTABLE
    assert not canary.exists()


def _private_python(tmp_path: Path) -> Path:
    """A copy of this virtualenv whose interpreter is a private copy of the binary."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), venv / "bin" / "python")
    shutil.copy2(Path(sys.prefix) / "pyvenv.cfg", venv / "pyvenv.cfg")
    (venv / "lib").symlink_to(Path(sys.prefix) / "lib")
    return venv / "bin" / "python"


def _attack_image(pydock: Pydock, tmp_path: Path) -> str:
    rootfs = busybox_rootfs(tmp_path / "attack.d")
    (rootfs / "bin" / "sleep").symlink_to("busybox")
    (rootfs / "probes").mkdir()
    shutil.copy2(build_probe("rewrite_exe", tmp_path), rootfs / "probes" / "rewrite_exe")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    encodings = rootfs / "py" / "lib" / version / "encodings"
    encodings.mkdir(parents=True)
    for name in ("__init__.py", "aliases.py", "utf_8.py"):
        shutil.copy2(Path(sys.base_prefix) / "lib" / version / "encodings" / name, encodings)
    for library in _shared_libraries(Path(sys.executable).resolve()):
        copy = rootfs / library.relative_to("/")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(library, copy)
    (rootfs / "x").write_text(ATTACK)
    (rootfs / "x").chmod(0o755)
    pydock.ok("image", "import", str(write_tar(tmp_path / "attack.tar", tree(rootfs))), "attack")
    return "attack"


def _shared_libraries(binary: Path) -> list[Path]:
    """The loader and libraries ``binary`` needs, as ldd lists them."""
    listing = subprocess.run(["ldd", str(binary)], check=True, capture_output=True, text=True)
    return [Path(word) for line in listing.stdout.splitlines() for word in line.split()
            if word.startswith("/")]


def _processes_running(binary: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/exe") == str(binary):
                    pids.append(int(entry))
            except OSError:
                continue
    return pids


def test_a_container_cannot_rewrite_the_interpreter_pydock_runs_on(pydock: Pydock,
                                                                   tmp_path: Path) -> None:
    image = _attack_image(pydock, tmp_path)
    python = _private_python(tmp_path)
    before = hashlib.sha256(python.read_bytes()).hexdigest()
    out = tmp_path / "out"
    out.mkdir()
    cli = [str(python), "-c", "from pydock.core.cli.main import main; main()",
           "--root", str(pydock.root)]
    subprocess.run([*cli, "run", "-d", "-name", "victim", "-v", f"{out}:/out",
                    "-e", "PYTHONHOME=/py", "--image", image, "/x"],
                   check=True, capture_output=True, timeout=30)
    try:
        time.sleep(1)  # the attack's first half: the script's fd, the probe started
        for pid in _processes_running(python):  # the monitor: it runs the private copy
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not (out / "result").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        result = (out / "result").read_text() if (out / "result").exists() else "no attack"
        assert hashlib.sha256(python.read_bytes()).hexdigest() == before, result
        assert result == "no attack"
    finally:
        pydock("rm", "-f", "victim")


def test_exec_never_runs_pydocks_interpreter_in_the_container(pydock: Pydock,
                                                              tmp_path: Path) -> None:
    image = _attack_image(pydock, tmp_path)
    pydock.ok("run", "-d", "-name", "box", "--image", image, "sleep", "600")
    try:
        result = pydock("exec", "-e", "PYTHONHOME=/py", "box", "/x", timeout=20)
        # The helper, as the script's interpreter, refuses to do anything.
        assert result.returncode == sealed_exec.EXIT_NOT_EXECUTABLE
        processes = pydock.ok("exec", "box", "sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '")
        assert "rewrite_exe" not in processes
    finally:
        pydock("rm", "-f", "box")
