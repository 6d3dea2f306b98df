"""``pydock run --init``: a reaping init as the container's PID 1, as docker's ``--init``.

The container's first process is PID 1 of its namespace: every orphan is re-parented to
it, and a command that never calls wait() on children it did not start (a Python server,
``exec sleep``) leaves them as zombies until the pid limit runs out; PID 1 also gets no
default action for SIGTERM or SIGINT, so ^C and ``stop`` do nothing to a command that
installs no handler. An init that reaps and forwards signals fixes both.

Which init: Debian's ``tini`` package, its static build (``tini-static``), bind mounted
read-only at ``/sbin/docker-init`` and run as ``/sbin/docker-init -- COMMAND...``, exactly
as docker does with its docker-init (which is tini). Why tini rather than an init of
pydock's own in the style of the exec helper: tini is the very program docker users get,
with a decade of fixes to its signal forwarding, exit-code and process-group rules; a
second, home-grown implementation of that would be more to review, and would behave
differently in corner cases a docker user relies on. Static, because an image may have no
libc at all (the default image has none); read-only, so that a container that opens its
``/proc/1/exe`` for writing cannot change the host's binary (CVE-2019-5736's idea). The
binary is found on the host when the container is created; its path is kept in the spec.
"""

from __future__ import annotations

import os
import stat
from typing import Any, Literal

from pydock.core.errors import PydockError

PATH = "/sbin/docker-init"  # where docker puts its init, so scripts that look find it
CANDIDATES = ("/usr/bin/tini-static", "/usr/bin/docker-init", "/usr/libexec/docker/docker-init")


def binary() -> str:
    """The host's static tini; PydockError saying what to install if there is none."""
    for candidate in CANDIDATES:
        path = os.path.realpath(candidate)
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111 and _is_static(path):
            return path
    raise PydockError("--init needs a static tini on the host (Debian: apt-get install tini, "
                      f"which provides /usr/bin/tini-static); looked for {', '.join(CANDIDATES)}")


def mount(source: str) -> dict[str, Any]:
    """The spec's ``mounts`` entry for the init: ``source`` bound read-only at :data:`PATH`.
    Its type, ``init``, keeps it out of ``inspect``'s Mounts (docker shows none for it);
    the runtime mounts it as a read-only volume."""
    return {"destination": PATH, "type": "init", "source": source, "options": ["rbind", "ro"]}


def _is_static(path: str) -> bool:
    """An ELF file without a PT_INTERP program header: it needs no dynamic loader, which
    the container's root may not have."""
    with open(path, "rb") as f:
        header = f.read(64)
        if header[:4] != b"\x7fELF" or header[4] != 2:  # 64-bit ELF only
            return False
        order: Literal["little", "big"] = "little" if header[5] == 1 else "big"
        phoff = int.from_bytes(header[32:40], order)
        phentsize = int.from_bytes(header[54:56], order)
        phnum = int.from_bytes(header[56:58], order)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(int.from_bytes(table[i:i + 4], order) != pt_interp
               for i in range(0, len(table), phentsize))
