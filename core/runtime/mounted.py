"""Work on a container's root from the host side without mounting anything on the host.

``diff`` and ``export`` need a container's root as the container sees it, and for most
drivers that view exists only as mounts. :func:`in_container_root` forks a child that
enters a private mount namespace, performs the driver's mounts exactly as ``run`` does,
runs one function there and exits: the mounts vanish with the child, whatever happens to
either process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from pydock.core.driver import Mount
from pydock.core.errors import PydockError
from pydock.core.runtime.rootfs import make_mounts_private, mount_rootfs
from pydock.core.syscalls import CLONE_NEWNS, unshare


def in_container_root(rootfs: str, mounts: Sequence[Mount],
                      task: Callable[[str], Any]) -> Any:
    """``task(rootfs)`` run with the container's root mounted at ``rootfs``; its JSON-able result.

    An exception in ``task`` comes back as a :class:`PydockError` with its message.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child; its effects are what is tested
        # The child must never return into the caller's frames: an exception there (the
        # parent stopped reading, so the reply hits a broken pipe) would run the parent's
        # except and finally blocks a second time, in this process.
        try:
            os.close(read_end)
            try:
                unshare(CLONE_NEWNS)
                make_mounts_private()
                mount_rootfs(rootfs, mounts)
                reply = {"result": task(rootfs)}
            except BaseException as exc:
                reply = {"error": str(exc) or type(exc).__name__}
            with os.fdopen(write_end, "w") as pipe:
                json.dump(reply, pipe)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        raw = pipe.read()
    _, status = os.waitpid(pid, 0)
    try:
        reply = json.loads(raw)
    except ValueError:
        raise PydockError(f"working on the container's root failed (status {status})") from None
    if "error" in reply:
        raise PydockError(reply["error"])
    return reply["result"]
