"""The container's root filesystem, set up inside its fresh mount namespace.

:func:`prepare_root` is the whole sequence, one named step per line, in the
order runc's ``prepareRootfs`` uses and for the same reasons (written at each
step). It runs in the container's first process after ``unshare(CLONE_NEWNS)``
and before ``exec``; nothing here touches the host's mount table, because the
very first step cuts propagation to it.

Every mount point inside the container's root is resolved with
``openat2(RESOLVE_IN_ROOT)`` and mounted through its file descriptor
(``/proc/self/fd/N``), never by a path string: an image can plant symlinks
(``/proc -> /``, ``/dev -> /host/dev``) and a path string would follow them
out of the root, onto the host. Volume destinations, which may not exist yet,
are created and opened under the same rule (:mod:`pydock.core.runtime.inroot`).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from pydock.core.driver import Mount
from pydock.core.errors import PydockError
from pydock.core.runtime.devices import Device, mount_devices
from pydock.core.runtime.etcfiles import mount_etc_files
from pydock.core.runtime.volumes import Volume, mount_volumes
from pydock.core.syscalls import (
    MNT_DETACH,
    MOUNT_ATTR_NODEV,
    MOUNT_ATTR_NOEXEC,
    MOUNT_ATTR_NOSUID,
    MOUNT_ATTR_RDONLY,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_STRICTATIME,
    mount,
    mount_fs_context,
    mount_setattr_recursive,
    open_in_root,
    pivot_root,
    umount2,
)

# mount(2) copies at most one page of options; longer ones go through fsconfig(2).
_PAGE_SIZE = 4096
_MOUNT_ATTRIBUTES = {MS_RDONLY: MOUNT_ATTR_RDONLY, MS_NOSUID: MOUNT_ATTR_NOSUID,
                     MS_NODEV: MOUNT_ATTR_NODEV, MS_NOEXEC: MOUNT_ATTR_NOEXEC}
_OPTION_FLAGS = {"ro": MS_RDONLY, "rw": 0, "nosuid": MS_NOSUID, "nodev": MS_NODEV,
                 "noexec": MS_NOEXEC, "bind": MS_BIND, "rbind": MS_BIND | MS_REC}

# Docker's defaults: MaskedPaths and ReadonlyPaths of moby's oci/defaults.go, applied the way
# runc's libcontainer/rootfs_linux.go does (maskPath, readonlyPath).
MASKED_PATHS = ("proc/acpi", "proc/asound", "proc/kcore", "proc/keys", "proc/latency_stats",
                "proc/timer_list", "proc/timer_stats", "proc/sched_debug", "proc/scsi",
                "sys/firmware", "proc/interrupts")
READ_ONLY_PATHS = ("proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger")
_DEV_SYMLINKS = {"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
                 "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx"}


class RootSpec(NamedTuple):
    """What the container's root holds besides the driver's mounts, from its spec."""

    volumes: Sequence[Volume] = ()  # in mounting order
    tmpfs: Sequence[Any] = ()  # pydock.core.runtime.tmpfs.Tmpfs, imported only with some
    devices: Sequence[Device] = ()
    masked_paths: Sequence[str] = ()  # relative to the root: "proc/kcore"
    read_only_paths: Sequence[str] = ()
    # (host file, path in the container): /etc/hostname, /etc/hosts, /etc/resolv.conf
    etc_files: Sequence[tuple[str, str]] = ()


def prepare_root(rootfs: str, mounts: Sequence[Mount], spec: RootSpec) -> None:
    """Build the container's root at ``rootfs`` from the driver's mounts, add what
    ``spec`` asks for, and switch to it.

    Afterwards ``/`` is the container's root, the host's root is unreachable,
    and the working directory is ``/``.
    """
    make_mounts_private()
    mount_rootfs(rootfs, mounts)
    # Opened after the rootfs mounts, so that it refers to the mounted root, not the
    # empty directory underneath it.
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        forbid_device_nodes(root_fd)
        mount_proc(root_fd)
        mount_dev(root_fd)
        mount_devices(root_fd, spec.devices)
        mount_sys(root_fd)
        mask_paths(root_fd, spec.masked_paths, spec.read_only_paths)
        mount_etc_files(root_fd, spec.etc_files)
        if spec.tmpfs:
            _mount_volumes_and_tmpfs(root_fd, spec)
        else:
            mount_volumes(root_fd, spec.volumes)
    finally:
        os.close(root_fd)
    pivot_to(rootfs)


def _mount_volumes_and_tmpfs(root_fd: int, spec: RootSpec) -> None:
    """Volumes and tmpfs mounts together, shallowest DST first as docker orders all of a
    container's mounts: ``--tmpfs /data -v SRC:/data/sub`` keeps the volume visible."""
    from pydock.core.runtime.tmpfs import Tmpfs, mount_tmpfs

    everything: list[Any] = [*spec.volumes, *spec.tmpfs]
    for item in sorted(everything, key=lambda item: str(item.destination).count("/")):
        if isinstance(item, Tmpfs):
            mount_tmpfs(root_fd, item)
        else:
            mount_volumes(root_fd, [item])


def make_mounts_private() -> None:
    # Before any mount: on a shared "/" our mounts would propagate to the host (the
    # tutorials' classic leak) and pivot_root would fail with EINVAL.
    mount(None, "/", None, MS_REC | MS_PRIVATE)


def mount_rootfs(rootfs: str, mounts: Sequence[Mount]) -> None:
    for spec in mounts:
        if spec.target == "/":
            _perform(spec, rootfs)
        else:
            with _mountpoint_fd(rootfs, spec.target) as target:
                _perform(spec, target)
    if not any(spec.target == "/" for spec in mounts):
        # The driver filled rootfs_dir itself; pivot_root needs a mount point.
        mount(rootfs, rootfs, None, MS_BIND | MS_REC)


def forbid_device_nodes(root_fd: int) -> None:
    # nodev on the driver's mounts, every one of them: an image's device nodes stay in its
    # layers but never open, in the container or for a host user coming through
    # /proc/PID/root (pydock.core.runtime.devices). One call for a bind, copy or overlay
    # root alike; the bind driver's mount would otherwise need a remount to take a flag.
    mount_setattr_recursive(root_fd, MOUNT_ATTR_NODEV)


def mount_proc(root_fd: int) -> None:
    with _mountpoint(root_fd, "proc") as target:
        mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_dev(root_fd: int) -> None:
    # nodev: root in the container may mknod here (CAP_MKNOD), but never open what it
    # made; the devices it may open are bind mounted on top (mount_devices).
    with _mountpoint(root_fd, "dev") as target:
        mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_STRICTATIME,
              "mode=755,size=65536k")
    dev = open_in_root(root_fd, "dev", os.O_PATH | os.O_DIRECTORY)
    try:
        for name, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)):
            os.mkdir(name, mode, dir_fd=dev)
        for name, target_path in _DEV_SYMLINKS.items():
            os.symlink(target_path, name, dir_fd=dev)
    finally:
        os.close(dev)
    # A private devpts instance: the container sees only its own pseudo-terminals.
    with _mountpoint(root_fd, "dev/pts") as target:
        mount("devpts", target, "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620,gid=5")
    with _mountpoint(root_fd, "dev/shm") as target:
        mount("shm", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "mode=1777,size=65536k")
    with _mountpoint(root_fd, "dev/mqueue") as target:
        mount("mqueue", target, "mqueue", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mount_sys(root_fd: int) -> None:
    with _mountpoint(root_fd, "sys") as target:
        mount("sysfs", target, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def mask_paths(root_fd: int, masked: Sequence[str], read_only: Sequence[str]) -> None:
    """Masked and read-only paths (docker's defaults: :data:`MASKED_PATHS`,
    :data:`READ_ONLY_PATHS`): kernel interfaces a container must not read (/proc/kcore,
    /proc/keys ...) or change (/proc/sys, /proc/sysrq-trigger ...)."""
    for path in masked:
        fd = _open_existing(root_fd, path)
        if fd is None:
            continue
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                mount("tmpfs", f"/proc/self/fd/{fd}", "tmpfs", MS_RDONLY, "size=0")
            else:
                mount("/dev/null", f"/proc/self/fd/{fd}", None, MS_BIND)
        finally:
            os.close(fd)
    for path in read_only:
        fd = _open_existing(root_fd, path)
        if fd is None:
            continue
        try:
            mount(f"/proc/self/fd/{fd}", f"/proc/self/fd/{fd}", None, MS_BIND | MS_REC)
        finally:
            os.close(fd)
        # Reopened: the first descriptor still names the directory under the new mount.
        fd = open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
        try:
            mount(None, f"/proc/self/fd/{fd}", None,
                  MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        finally:
            os.close(fd)


def _open_existing(root_fd: int, path: str) -> int | None:
    try:
        return open_in_root(root_fd, path, os.O_PATH | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None


def pivot_to(rootfs: str) -> None:
    # pivot_root(".", ".") stacks the old root on top of the new one at "/", so
    # no directory is needed for it inside the image; detaching it right away
    # leaves the host's root unreachable (chroot would leave it one escape away).
    os.chdir(rootfs)
    pivot_root(".", ".")
    umount2(".", MNT_DETACH)
    os.chdir("/")


def remount_root_read_only() -> None:
    # A bind remount changes only this mount's flags; the flags it already has must
    # be repeated or they would be cleared.
    current = os.statvfs("/").f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | current)


def _perform(spec: Mount, target: str) -> None:
    flags, data = 0, []
    for option in spec.options:
        if option in _OPTION_FLAGS:
            flags |= _OPTION_FLAGS[option]
        else:
            data.append(option)
    if spec.type == "bind":
        flags |= MS_BIND
        mount(spec.source, target, None, flags & ~MS_RDONLY)
        if flags & MS_RDONLY:
            # MS_RDONLY is ignored when a bind mount is created; it takes a remount.
            mount(None, target, None, MS_REMOUNT | MS_BIND | (flags & ~MS_REC))
    elif len(",".join(data)) >= _PAGE_SIZE:
        _mount_long_options(spec, target, flags, data)
    else:
        mount(spec.source, target, spec.type, flags, ",".join(data) or None)


def _mount_long_options(spec: Mount, target: str, flags: int, data: list[str]) -> None:
    """Options past mount(2)'s one page: the new mount API, and one ``lowerdir+`` per layer."""
    params: list[tuple[str, str | None]] = [("source", spec.source)]
    for option in data:
        key, sep, value = option.partition("=")
        if spec.type == "overlay" and key == "lowerdir":
            params.extend(("lowerdir+", layer) for layer in value.split(":"))
        else:
            params.append((key, value if sep else None))
    attributes = sum(attr for flag, attr in _MOUNT_ATTRIBUTES.items() if flags & flag)
    try:
        mount_fs_context(spec.type, target, params, attributes)
    except OSError as exc:
        raise PydockError(f"mounting {spec.type} on {target} ({len(data)} options, "
                          f"{len(','.join(data))} bytes): {exc.strerror}") from None


@contextlib.contextmanager
def _mountpoint(root_fd: int, path: str) -> Iterator[str]:
    """A ``/proc/self/fd/N`` path for directory ``path`` inside the root, created if missing.

    Refuses a symlink (runc refuses a /proc that is one): mounting "through" it
    would land outside the container's root.
    """
    parent_path, name = os.path.split(path)
    parent = open_in_root(root_fd, parent_path or ".", os.O_PATH | os.O_DIRECTORY)
    try:
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            os.mkdir(name, 0o755, dir_fd=parent)
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            raise PydockError(f"refusing to mount on /{path}: it is a symlink in the image")
        if not stat.S_ISDIR(st.st_mode):
            raise PydockError(f"cannot mount on /{path}: it is not a directory in the image")
        fd = os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=parent)
    finally:
        os.close(parent)
    try:
        yield f"/proc/self/fd/{fd}"
    finally:
        os.close(fd)


@contextlib.contextmanager
def _mountpoint_fd(rootfs: str, path: str) -> Iterator[str]:
    root_fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        with _mountpoint(root_fd, path.strip("/")) as target:
            yield target
    finally:
        os.close(root_fd)
