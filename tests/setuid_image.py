"""An image with a setuid-root binary, for tests of what such a binary may (not) grant.

The binary is the host's static busybox, setuid root, reached as ``/suid/id``: busybox runs
the applet its name says, and normally gives up a setuid root it was not told to keep; the
image's ``/etc/busybox.conf`` tells it to keep it for ``id``. So ``/suid/id -u`` prints 0
when the setuid bit took effect (the effective uid is root's) and the caller's uid when not.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tar_members import Member, dir_, make_tar, reg, sym

from pydock.testing.cli import Pydock

SETUID_ID = "/suid/id"
APPLETS = ("sh", "cat", "id", "ls", "sleep", "mkfifo", "mv", "grep", "echo", "true")


def busybox_binary() -> bytes:
    busybox = shutil.which("busybox")
    assert busybox, "busybox-static must be installed (the README's setup installs it)"
    return Path(busybox).read_bytes()


def setuid_members(busybox: bytes) -> list[Member]:
    """A busybox root filesystem whose /suid/busybox is setuid root."""
    return [
        dir_("bin"), dir_("etc"), dir_("proc", 0o555), dir_("sys", 0o555), dir_("dev"),
        dir_("tmp", 0o1777), dir_("suid"),
        reg("bin/busybox", busybox, 0o755),
        *[sym(f"bin/{applet}", "busybox") for applet in APPLETS],
        reg("suid/busybox", busybox, 0o4755, uid=0, gid=0),
        sym(SETUID_ID.lstrip("/"), "busybox"),
        # Read by a setuid busybox only when it is owned by root and writable by no one else.
        reg("etc/busybox.conf", b"[SUID]\nid = ssx 0.0\n", 0o600),
        reg("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        reg("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
    ]


def import_setuid_image(pydock: Pydock, tmp_path: Path, name: str = "setuid") -> str:
    """Import the image through ``pydock image import``; its name."""
    tarball = tmp_path / "setuid.tar"
    tarball.write_bytes(make_tar(setuid_members(busybox_binary())))
    pydock.ok("image", "import", str(tarball), name)
    return name
