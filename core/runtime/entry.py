"""What a process leaves behind as it enters a container: the caller's descriptors, its
session keyring, its root and its working directory.

The container's first process and exec's joining child both come from a pydock process
started by someone on the host, and inherit that caller's state. Each function here drops
one piece of it, in the order :mod:`pydock.core.runtime.spawn` calls them:

1. :func:`join_new_session_keyring`: a session keyring is inherited and not namespaced.
2. :func:`close_inherited_fds`: an fd the caller passed (``7</etc``) is a way out of the
   root through ``/proc/self/fd/7``; it must be gone before any path the user or the
   image chose (``-w``, WorkingDir) is resolved.
3. :func:`open_container_root` and :func:`enter_root` (exec only): the container's root
   taken from its first process, not from the mount namespace.
4. :func:`enter_workdir`: chdir, then check that the result is inside the root.
"""

from __future__ import annotations

import errno
import os
import signal

from pydock.core import syscalls


def join_new_session_keyring() -> None:
    """A fresh, empty session keyring, as runc's KEYCTL_JOIN_SESSION_KEYRING: otherwise
    the container reads, and adds to, the keys of the caller's login session (the
    kernel's keyrings know no container), with every capability dropped. A kernel built
    without keys (ENOSYS) has no keyring to share."""
    try:
        syscalls.join_new_session_keyring()
    except OSError as exc:
        if exc.errno != errno.ENOSYS:
            raise


def close_inherited_fds(keep: tuple[int, ...]) -> None:
    """Close every fd above 2 but those in ``keep`` (the error pipe to the parent and the
    sealed exec helper, both close-on-exec).

    CVE-2024-21626: runc leaked a host directory fd into the container, and a working
    directory of ``/proc/self/fd/N`` then started the container with a host directory as
    its cwd. So the fds go before the working directory is made, entered or checked.
    """
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def open_container_root(container: int) -> int:
    """An fd for the root directory of the process behind the pidfd ``container``: the
    container's root as its first process sees it (nsenter --root does the same).

    Joining a mount namespace moves a process to that namespace's root mount, which is not
    the container's root once it pivoted: when pydock runs in a chroot, it is the host's /.
    """
    pid = _pid_of(container)
    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    # The pid named the container until now if the process behind the pidfd has not
    # exited: its pid cannot have been reused before that.
    try:
        signal.pidfd_send_signal(container, 0)
    except ProcessLookupError:
        os.close(root)
        raise ProcessLookupError("the container exited while exec was joining it") from None
    return root


def enter_root(root: int) -> None:
    """Make ``root`` (from :func:`open_container_root`) this process's root and cwd, then
    close it: once in the container's mount namespace, the fd names a directory there."""
    os.fchdir(root)
    os.chroot(".")
    os.close(root)


def enter_workdir(path: str) -> None:
    """chdir to ``path`` and check that the result is inside the root (CVE-2024-21626, as
    runc's verifyCwd): a directory outside it, reached through a magic link of /proc, has
    no path from the root, and getcwd(2) tells so (ENOENT, or a path not from /)."""
    os.chdir(path)
    try:
        cwd = os.getcwd()
    except FileNotFoundError:
        cwd = ""
    if not cwd.startswith("/"):
        raise PermissionError(f"working directory {path}: outside the container's root")


def _pid_of(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}") as info:
        for line in info:
            key, _, value = line.partition(":")
            if key == "Pid" and int(value) > 0:  # -1 once the process has exited
                return int(value)
    raise ProcessLookupError("the container exited while exec was joining it")
