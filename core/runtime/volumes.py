"""Volumes: ``pydock run -v SRC:DST[:ro|rw]``, host paths bind mounted into a container.

A volume passes through three moments, one function each:

- :func:`parse_volumes`, before anything exists: the flags as given become
  :class:`Volume` values, or one clear error (exit 125). It reads and writes nothing, so
  a bad ``-v`` leaves nothing behind.
- :func:`create_sources`, while the container is created: a missing SRC becomes a
  directory, as with docker's ``-v``; if that fails half-way, what it created goes again.
- :func:`mount_volumes`, in the container's first process, after /proc, /dev and /sys
  and before pivot_root: each SRC is bind mounted recursively (docker's default
  ``rbind``) onto DST, resolved *inside* the container's root. The mounts belong to the
  container's mount namespace and vanish with it: the host has nothing to clean up.

Only bind mounts of absolute host paths are supported; docker's named and anonymous
volumes (a SRC that is a name, or a lone DST) are refused with a message saying so.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from pydock.core.errors import PydockError
from pydock.core.runtime.inroot import open_or_create
from pydock.core.syscalls import (
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_RDONLY,
    mount_setattr_recursive,
    move_mount_onto,
    open_tree_clone,
)

FORMAT = "SRC:DST[:ro|rw]"
MODES = ("ro", "rw")
# The kernel's own interfaces: a volume on top of them would replace what the masked and
# read-only paths protect. (docker allows /dev/...; /dev is the container's own tmpfs.)
KERNEL_DIRS = ("/proc", "/sys")


class Volume(NamedTuple):
    """One ``-v``, checked and with both paths normalised."""

    spec: str  # as given on the command line (docker's HostConfig.Binds)
    source: str  # absolute host path
    destination: str  # absolute path inside the container, never "/"
    mode: str  # "ro", "rw", or "" when not given (read-write), as docker's inspect shows it

    @property
    def read_only(self) -> bool:
        return self.mode == "ro"

    def to_mount(self) -> dict[str, Any]:
        """The volume as an entry of an OCI spec's ``mounts`` (docker's default ``rbind``;
        the mode only where it was given, so that inspect shows it as docker does)."""
        return {"destination": self.destination, "type": "bind", "source": self.source,
                "options": ["rbind", *([self.mode] if self.mode else [])]}

    @classmethod
    def from_mount(cls, mount: dict[str, Any]) -> Volume:
        """The volume an OCI ``mounts`` entry written by :meth:`to_mount` describes."""
        modes = [option for option in mount["options"] if option in MODES]
        mode = modes[-1] if modes else ""
        source, destination = mount["source"], mount["destination"]
        return cls(":".join([source, destination, *([mode] if mode else [])]), source,
                   destination, mode)

    def describe(self) -> dict[str, Any]:
        """The volume as an entry of docker's inspect ``Mounts``."""
        return {"Type": "bind", "Source": self.source, "Destination": self.destination,
                "Mode": self.mode, "RW": not self.read_only,
                # Every mount in a container's namespace is made private before any mount.
                "Propagation": "rprivate"}


def parse_volumes(specs: Sequence[str]) -> tuple[Volume, ...]:
    """Check every ``-v`` and return the volumes in the order they must be mounted.

    That order is docker's: fewer path components first, so that ``-v a:/data/sub``
    given before ``-v b:/data`` is mounted on top of ``/data``, not hidden under it.
    """
    volumes = [_parse_volume(spec) for spec in specs]
    seen: set[str] = set()
    for volume in volumes:
        if volume.destination in seen:
            raise PydockError(f"invalid volume {volume.spec!r}: duplicate mount point "
                              f"{volume.destination}")
        seen.add(volume.destination)
    return tuple(sorted(volumes, key=lambda volume: volume.destination.count("/")))


def _parse_volume(spec: str) -> Volume:
    def invalid(reason: str) -> PydockError:
        return PydockError(f"invalid volume {spec!r}: {reason}")

    if not spec:
        raise invalid(f"empty (expected {FORMAT})")
    parts = spec.split(":")
    if len(parts) == 1:
        raise invalid(f"expected {FORMAT} (anonymous volumes are not supported)")
    if len(parts) > 3:
        raise invalid(f"too many ':' (expected {FORMAT})")
    source, destination, *options = parts
    mode = options[0] if options else ""
    if not source:
        raise invalid(f"empty SRC (expected {FORMAT})")
    if not destination:
        raise invalid(f"empty DST (expected {FORMAT})")
    if options and not mode:
        raise invalid(f"empty option after the last ':' (expected {FORMAT})")
    if source.startswith((".", "~")) or ("/" in source and not source.startswith("/")):
        # A path, but not an absolute one: said as such, not as a named volume. (Docker
        # 23+ resolves it against the client's cwd; pydock binds only what it is told.)
        raise invalid(f"host paths must be absolute: SRC {source!r} is relative "
                      f"(use {'$PWD/' + source.removeprefix('./')!r} or an absolute path)")
    if not source.startswith("/"):
        raise invalid(f"named volumes are not supported: SRC {source!r} must be an "
                      "absolute host path")
    if not destination.startswith("/"):
        raise invalid(f"DST {destination!r} must be an absolute path")
    if mode not in ("", *MODES):
        raise invalid(f"unknown option {mode!r} (expected ro or rw)")
    destination = _normalise(destination)
    if destination == "/":
        raise invalid("DST must not be / (the container's root)")
    for top in KERNEL_DIRS:
        if destination == top or destination.startswith(top + "/"):
            raise invalid(f"DST {destination} is under {top}, the kernel's interface, "
                          "which volumes may not cover")
    return Volume(spec, _normalise(source), destination, mode)


def _normalise(path: str) -> str:
    # normpath keeps a leading "//" (POSIX leaves its meaning open); Linux has none.
    return "/" + posixpath.normpath(path).lstrip("/")


def create_sources(volumes: Sequence[Volume]) -> None:
    """Create every missing SRC as a directory (0755, parents too), as docker does.

    All or nothing: on a failure, the directories created so far are removed again
    (only those; a directory that something else filled in the meantime stays).
    """
    created: list[str] = []
    try:
        for volume in volumes:
            _create_source(volume, created)
    except PydockError:
        for path in reversed(created):
            with contextlib.suppress(OSError):  # filled meanwhile: not ours alone to remove
                os.rmdir(path)
        raise


def _create_source(volume: Volume, created: list[str]) -> None:
    missing = []
    path = volume.source
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o755)
        except OSError as exc:
            raise PydockError(f"volume {volume.spec}: cannot create {path}: "
                              f"{exc.strerror}") from None
        created.append(path)
    try:
        os.stat(volume.source)  # a dangling symlink, for one, is no source
    except OSError as exc:
        raise PydockError(f"volume {volume.spec}: {volume.source}: {exc.strerror}") from None


def mount_volumes(root_fd: int, volumes: Sequence[Volume]) -> None:
    """Bind mount every volume inside the root ``root_fd``, in order (see the module doc)."""
    for volume in volumes:
        with mounting(f"volume {volume.spec}"):
            _mount(root_fd, volume)


@contextlib.contextmanager
def mounting(what: str) -> Iterator[None]:
    """A failure to mount ``what`` (a volume, a tmpfs, a file of pydock's) as one line that
    names it, whether the kernel or pydock's own checks refused it."""
    try:
        yield
    except OSError as exc:
        raise PydockError(f"mounting {what}: {exc.strerror}") from None
    except PydockError as exc:
        raise PydockError(f"mounting {what}: {exc}") from None


def _mount(root_fd: int, volume: Volume) -> None:
    # The mount is built detached, made read-only if asked, and only then attached: the
    # container's tree never holds a writable moment of a read-only volume, and
    # mount_setattr reaches the submounts of the recursive bind too, which a remount
    # (one mount at a time) would leave writable.
    tree = open_tree_clone(volume.source)
    try:
        # nodev always: a device node in a volume (or made there by the container) must
        # not open (pydock.core.runtime.devices; --device is the way to pass a device).
        mount_setattr_recursive(tree, MOUNT_ATTR_NODEV | (
            MOUNT_ATTR_RDONLY if volume.read_only else 0))
        # A directory goes on a directory, anything else (a file, a socket) on a file.
        attach_in_root(tree, root_fd, volume.destination, stat.S_ISDIR(os.fstat(tree).st_mode))
    finally:
        os.close(tree)


def attach_in_root(tree: int, root_fd: int, path: str, directory: bool) -> None:
    """Attach the detached mount ``tree`` at ``path`` inside the root ``root_fd``, on a
    directory or a file made there if missing (never under /proc, /sys or /dev/pts)."""
    target = open_or_create(root_fd, path, directory, KERNEL_DIRS)
    try:
        move_mount_onto(tree, target.fd)
    finally:
        os.close(target.fd)
