"""Where the service keeps its files and its socket, and who else could change them.

Whoever can call the socket can have containerd mount, as root, anything in the service's
root; whoever can change the root can point a layer at any host directory (containerd
follows a symlink it is given as a lower directory or a bind source). So both must be
root's alone: every directory on the way to them owned by root, none writable by anyone
else, but for a sticky one (/tmp) above the last, where others cannot rename what root
owns. The socket's own directory may not be writable by others even when sticky: while the
service is down, another user could listen on the socket's name there, and containerd,
which reconnects by itself, would mount whatever that user's server answered.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from pathlib import Path

from pydock.core.errors import PydockError

# A unix socket's path holds 107 bytes and a NUL (sun_path is 108).
MAX_SOCKET_PATH = 107
# How long a socket on the path has to accept the probe before it counts as live.
PROBE_SECONDS = 2.0


def make_private_dir(path: Path) -> None:
    """Make ``path`` (and missing parents) 0700, then check that only root can change it
    or anything on the way to it."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        if not path.is_dir():
            raise PydockError(f"{path} exists and is not a directory") from None
    problem = others_can_change(path)
    if problem:
        raise PydockError(f"{problem}: the service's files and socket must be root's alone, "
                          "choose a directory only root can change")


def others_can_change(directory: Path) -> str | None:
    """What lets someone other than root change ``directory``, or None: checked along the
    path as given (a symlink on the way is itself checked) and along the path it resolves to."""
    for path in dict.fromkeys((directory, Path(os.path.realpath(directory)))):
        parts = path.parts
        for depth in range(1, len(parts) + 1):
            current = Path(*parts[:depth])
            st = os.lstat(current)
            if st.st_uid != 0:
                return f"{current} is owned by uid {st.st_uid}"
            if stat.S_ISLNK(st.st_mode) or not st.st_mode & 0o022:
                continue
            last = depth == len(parts)
            if last or not st.st_mode & stat.S_ISVTX:
                return f"{current} may be written by other users"
    return None


def claim(home: Path, root: Path) -> int:
    """Lock ``home`` for this process's life: two services on one root would each sweep
    the other's new snapshots as leftovers, and overwrite each other's graph."""
    try:
        fd = os.open(home / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
                     | os.O_NOCTTY | os.O_NONBLOCK, 0o600)
    except OSError as exc:
        raise PydockError(f"cannot open {home / 'lock'}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise PydockError(f"{home / 'lock'} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise PydockError(f"another pydock snapshotter (pid {holder}) serves {root}: "
                              "two services never share a root, give this one another "
                              "--root") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def listening_path(address: Path) -> Path:
    """Where the server binds before its socket is renamed to ``address``: gRPC removes the
    path it bound when it stops, which must never be a name another service has taken
    since; and containerd then finds a socket at ``address`` only once it is listening."""
    return address.with_name(f".{os.getpid()}.new")


def prepare_socket_path(address: Path) -> None:
    """Make the socket's directory if missing; remove a socket a killed service left, but
    never a live server's socket, nor anything that is not a socket."""
    if not address.is_absolute():
        raise PydockError(f"--address {address}: give an absolute path")
    longest = max(len(os.fsencode(address)), len(os.fsencode(listening_path(address))))
    if longest > MAX_SOCKET_PATH:
        raise PydockError(f"--address {address} is longer than a unix socket path may be "
                          f"({MAX_SOCKET_PATH} bytes)")
    if "%" in str(address):
        # gRPC reads the address as a URI and would decode %2F into a "/": the socket would
        # be made, and removed, somewhere never checked.
        raise PydockError(f"--address {address}: a socket path with '%' is not supported")
    make_private_dir(address.parent)
    try:
        st = os.lstat(address)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise PydockError(f"{address} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(PROBE_SECONDS)
    try:
        probe.connect(str(address))
    except ConnectionRefusedError:
        os.unlink(address)  # nobody listens: the socket of a killed service
        return
    except FileNotFoundError:
        return
    except OSError as exc:  # a timeout or EAGAIN: a server too busy to accept is still one
        if exc.errno not in (None, errno.EAGAIN):
            raise
    finally:
        probe.close()
    raise PydockError(f"{address} is the socket of a running server: stop it, or choose "
                      "another --address")


class ServedSocket:
    """The socket this service made, moved from where it was bound (:func:`listening_path`)
    to ``address``, and removed at its end only if it is still that one: a service started
    meanwhile on the same path (after removing this one's as stale, say) keeps its own."""

    def __init__(self, address: Path) -> None:
        self.address = address
        bound = listening_path(address)
        st = os.lstat(bound)
        self.identity = (st.st_dev, st.st_ino)
        os.rename(bound, address)

    def remove(self) -> None:
        try:
            st = os.lstat(self.address)
        except FileNotFoundError:
            return
        if (st.st_dev, st.st_ino) == self.identity:
            os.unlink(self.address)
