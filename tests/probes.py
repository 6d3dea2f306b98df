"""Static C probes: small programs that make one system call inside a container, for the
isolation tests (TIOCSTI, keyctl, unshare, open of a device node ...).

busybox has no applet for most of what an attacker does with raw system calls, and an
image's own tools are what the attacker chooses anyway. Each probe is ``probes/NAME.c``,
built once per test session with ``gcc -static`` (no loader or libc needed in the image)
and put in a busybox image under ``/probes/NAME``.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from helpers import busybox_rootfs

from pydock.testing.cli import Pydock
from pydock.testing.tar import Member, tree, write_tar

SOURCES = Path(__file__).parent / "probes"


def build_probe(name: str, out_dir: Path) -> Path:
    """``probes/NAME.c`` built statically into ``out_dir`` (once); the binary's path."""
    binary = out_dir / name
    if not binary.exists():
        gcc = shutil.which("gcc")
        assert gcc, "gcc and libc6-dev must be installed (the README's setup installs them)"
        subprocess.run([gcc, "-static", "-O2", "-Wall", "-Werror", "-o", str(binary),
                        str(SOURCES / f"{name}.c")], check=True)
    return binary


def import_probe_image(pydock: Pydock, work: Path, names: Sequence[str],
                       image: str = "probes", extra: Sequence[Member] = ()) -> str:
    """A busybox image with the probes ``names`` under /probes and the members ``extra``
    (what no directory on the host can hold, such as device nodes), imported as ``image``."""
    rootfs = busybox_rootfs(work / f"{image}.d")
    (rootfs / "probes").mkdir(exist_ok=True)
    for name in names:
        shutil.copy2(build_probe(name, work), rootfs / "probes" / name)
    members = [*tree(rootfs), *extra]
    pydock.ok("image", "import", str(write_tar(work / f"{image}.tar", members)), image)
    return image
