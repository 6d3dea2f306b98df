"""Thin ctypes wrappers for the Linux system calls pydock needs and Python lacks.

Everything that talks to the kernel below the level of :mod:`os` lives here and
nowhere else, so the rest of pydock reads as plain Python and this file can be
checked against the man pages in one sitting. Each wrapper raises
:class:`OSError` (with ``errno`` set) on failure, like the :mod:`os` functions.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Sequence

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# mount(2) flags.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24

MOUNT_FLAG_NAMES = {
    MS_RDONLY: "MS_RDONLY",
    MS_NOSUID: "MS_NOSUID",
    MS_NODEV: "MS_NODEV",
    MS_NOEXEC: "MS_NOEXEC",
    MS_REMOUNT: "MS_REMOUNT",
    MS_BIND: "MS_BIND",
    MS_MOVE: "MS_MOVE",
    MS_REC: "MS_REC",
    MS_PRIVATE: "MS_PRIVATE",
    MS_SLAVE: "MS_SLAVE",
    MS_STRICTATIME: "MS_STRICTATIME",
}

# umount2(2) flags.
MNT_DETACH = 0x2

# unshare(2) / clone(2) namespace flags.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# openat2(2) resolve flags.
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_IN_ROOT = 0x10

# renameat2(2) flags.
RENAME_NOREPLACE = 0x1

# The new mount API (fsopen and friends).
FSOPEN_CLOEXEC = 0x1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
FSMOUNT_CLOEXEC = 0x1
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
OPEN_TREE_CLONE = 0x1
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
_AT_FDCWD = -100

# Syscall numbers glibc has no wrapper for (or only recent glibc has). Syscalls added
# after the per-architecture tables were unified have one number everywhere.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_OPENAT2 = 437
_SYS_MOUNT_SETATTR = 442

OVERLAYFS_SUPER_MAGIC = 0x794C7630


def _check(result: int, what: str) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def _flag_names(flags: int) -> str:
    names = [name for bit, name in MOUNT_FLAG_NAMES.items() if flags & bit]
    rest = flags & ~sum(MOUNT_FLAG_NAMES)
    if rest:
        names.append(hex(rest))
    return "|".join(names) or "0"


class MountError(OSError):
    """A failed mount(2), described by operation, source, target and flags by name."""

    def __init__(self, err: int, source: str | None, target: str, fstype: str | None,
                 flags: int, data: str | None) -> None:
        detail = f"mount {fstype or '(none)'} {source or '(none)'} on {target}"
        detail += f" flags={_flag_names(flags)}"
        if data:
            detail += f" data={data!r}"
        super().__init__(err, f"{detail}: {os.strerror(err)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0,
          data: str | None = None) -> None:
    """mount(2). ``target`` may be a ``/proc/self/fd/N`` path to mount by file descriptor."""
    result = _libc.mount(
        os.fsencode(source) if source is not None else None,
        os.fsencode(target),
        os.fsencode(fstype) if fstype is not None else None,
        ctypes.c_ulong(flags),
        os.fsencode(data) if data is not None else None,
    )
    if result < 0:
        raise MountError(ctypes.get_errno(), source, target, fstype, flags, data)


def mount_fs_context(fstype: str, target: str, params: Sequence[tuple[str, str | None]],
                     attributes: int = 0) -> None:
    """Mount a new ``fstype`` on ``target`` with the new mount API, one parameter per call.

    mount(2) takes all options as one page (4096 bytes); fsconfig(2) takes them one
    at a time, which is what lets overlay stack hundreds of layers (``lowerdir+``, Linux
    6.8+). ``params`` are (key, value) pairs; a value of None sets a flag. On failure the
    kernel's own explanation, which it queues on the context descriptor, is in the error.
    """
    mnt_fd = new_mount(fstype, params, attributes)
    try:
        _check(_libc.syscall(_SYS_MOVE_MOUNT, mnt_fd, b"", _AT_FDCWD, os.fsencode(target),
                             MOVE_MOUNT_F_EMPTY_PATH), f"move_mount {fstype} to {target}")
    finally:
        os.close(mnt_fd)


def new_mount(fstype: str, params: Sequence[tuple[str, str | None]],
              attributes: int = 0) -> int:
    """A new, detached mount of ``fstype`` (fsopen, fsconfig, fsmount), as a descriptor
    for :func:`move_mount_onto`; ``params`` as for :func:`mount_fs_context`."""
    fs_fd = _check(_libc.syscall(_SYS_FSOPEN, os.fsencode(fstype), FSOPEN_CLOEXEC),
                   f"fsopen {fstype}")
    try:
        try:
            for key, value in params:
                if value is None:
                    _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_SET_FLAG,
                                         os.fsencode(key), None, 0), f"{fstype} option {key}")
                else:
                    _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_SET_STRING,
                                         os.fsencode(key), os.fsencode(value), 0),
                           f"{fstype} option {key}={value}")
            _check(_libc.syscall(_SYS_FSCONFIG, fs_fd, FSCONFIG_CMD_CREATE, None, None, 0),
                   f"creating {fstype}")
        except OSError as exc:
            raise OSError(exc.errno, f"{exc.strerror}{_kernel_log(fs_fd)}") from None
        return _check(_libc.syscall(_SYS_FSMOUNT, fs_fd, FSMOUNT_CLOEXEC, attributes),
                      f"fsmount {fstype}")
    finally:
        os.close(fs_fd)


def _kernel_log(fs_fd: int) -> str:
    """Messages the kernel queued on an fsopen context (lines like ``e overlay: ...``)."""
    messages = []
    while True:
        try:
            messages.append(os.read(fs_fd, 4096).decode(errors="replace").strip())
        except OSError:
            break
    return f" ({'; '.join(messages)})" if messages else ""


def open_tree_clone(path: str) -> int:
    """open_tree(OPEN_TREE_CLONE | AT_RECURSIVE): a detached copy of the mount tree at
    ``path`` (what ``mount --rbind`` would attach), as a descriptor. Nothing is mounted
    until :func:`move_mount_onto` attaches it; closing it unattached discards it."""
    flags = OPEN_TREE_CLONE | AT_RECURSIVE | os.O_CLOEXEC
    return _check(_libc.syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(path),
                                ctypes.c_uint(flags)), f"open_tree {path}")


class _MountAttr(ctypes.Structure):
    _fields_ = (("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64))


def mount_setattr_recursive(mount_fd: int, attr_set: int) -> None:
    """mount_setattr(AT_RECURSIVE): set ``MOUNT_ATTR_*`` flags on the mount ``mount_fd``
    refers to and on every mount below it, in one call (a remount changes one mount)."""
    attr = _MountAttr(attr_set, 0, 0, 0)
    _check(_libc.syscall(_SYS_MOUNT_SETATTR, mount_fd, b"",
                         ctypes.c_uint(AT_EMPTY_PATH | AT_RECURSIVE), ctypes.byref(attr),
                         ctypes.c_size_t(ctypes.sizeof(attr))), "mount_setattr")


def move_mount_onto(mount_fd: int, target_fd: int) -> None:
    """move_mount(2) of the (detached) mount ``mount_fd`` onto the file or directory
    ``target_fd`` refers to: mounting by descriptor, with no path to resolve again."""
    _check(_libc.syscall(_SYS_MOVE_MOUNT, mount_fd, b"", target_fd, b"",
                         ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH)),
           "move_mount")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(os.fsencode(target), flags), f"umount {target}")


def unshare(flags: int) -> None:
    """unshare(2), for the calling thread. A new user namespace needs a single-threaded
    process (the kernel refuses otherwise); a new mount namespace is the calling thread's
    alone, the process's only if no other thread exists yet."""
    _check(_libc.unshare(flags), "unshare")


def syncfs(fd: int) -> None:
    """syncfs(2): write out everything of the filesystem ``fd`` is on, not every one."""
    _check(_libc.syncfs(fd), "syncfs")


def setns(fd: int, nstype: int) -> None:
    """setns(2): join the namespace ``fd`` refers to (for PID: that of future children)."""
    _check(_libc.setns(fd, nstype), "setns")


# keyctl(2) operations.
_KEYCTL_JOIN_SESSION_KEYRING = 1
_SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}


def join_new_session_keyring() -> int:
    """keyctl(KEYCTL_JOIN_SESSION_KEYRING, NULL): this process gets a new anonymous
    session keyring, in place of the one it inherited; returns its serial.

    A session keyring is inherited across fork and exec and is not a namespaced
    resource: without this, a container reads and links the keys of whoever started it.
    """
    number = _SYS_KEYCTL[os.uname().machine]
    return _check(_libc.syscall(ctypes.c_long(number), ctypes.c_long(_KEYCTL_JOIN_SESSION_KEYRING),
                                ctypes.c_void_p(None)),
                  "keyctl(KEYCTL_JOIN_SESSION_KEYRING)")


# prctl(2) options.
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3),
                              ctypes.c_ulong(arg4), ctypes.c_ulong(arg5)), f"prctl {option}")


PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def set_seccomp_filter(program: bytes) -> None:
    """prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER): every later system call of this thread,
    and of what it execs and forks, goes through the classic BPF ``program`` (an array of
    struct sock_filter, as libseccomp's seccomp_export_bpf writes it). Needs no_new_privs
    or CAP_SYS_ADMIN."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // _SOCK_FILTER_SIZE, ctypes.addressof(buffer))
    _check(_libc.prctl(PR_SET_SECCOMP, ctypes.c_ulong(SECCOMP_MODE_FILTER),
                       ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0)),
           "prctl PR_SET_SECCOMP")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for this thread; the masks are 64-bit (two 32-bit words, low first)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(*[
        _CapData((effective >> shift) & 0xFFFFFFFF, (permitted >> shift) & 0xFFFFFFFF,
                 (inheritable >> shift) & 0xFFFFFFFF) for shift in (0, 32)])
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def pivot_root(new_root: str, put_old: str) -> None:
    machine = os.uname().machine
    number = _SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root: unsupported architecture {machine}")
    _check(_libc.syscall(number, os.fsencode(new_root), os.fsencode(put_old)), "pivot_root")


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64))


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0) -> int:
    """Open ``path`` as if ``root_fd`` were ``/``: absolute symlinks and ``..`` stay inside.

    This is openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), the kernel's own answer to
    "resolve a path chosen by an untrusted image without ever leaving its root"; string
    checks on the path cannot do this because any component may be a symlink.
    """
    how = _OpenHow(flags | os.O_CLOEXEC, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(_SYS_OPENAT2, root_fd, os.fsencode(path), ctypes.byref(how),
                       ctypes.sizeof(how))
    return _check(fd, f"open {path!r} inside root")


def rename_noreplace(src: str, dst: str) -> None:
    """renameat2(RENAME_NOREPLACE): atomic rename that fails with EEXIST instead of replacing."""
    at_fdcwd = -100
    result = _libc.renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst),
                             RENAME_NOREPLACE)
    _check(result, f"rename {src} to {dst}")


def statfs_type(path: str) -> int:
    """The filesystem magic number of ``path`` (struct statfs.f_type)."""
    buf = ctypes.create_string_buffer(120)  # sizeof(struct statfs) is 120 on 64-bit Linux
    _check(_libc.statfs(os.fsencode(path), buf), f"statfs {path}")
    return int(struct.unpack_from("l", buf.raw)[0])


def set_link_up(name: str) -> None:
    """Bring a network interface up (SIOCGIFFLAGS / SIOCSIFFLAGS on a datagram socket)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    af_inet, sock_dgram, sock_cloexec = 2, 2, 0o2000000
    # socket(2) through libc: the socket module would cost milliseconds of imports per run.
    sock = _libc.socket(af_inet, sock_dgram | sock_cloexec, 0)
    _check(sock, "socket")
    try:
        request = struct.pack("16sH", os.fsencode(name), 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, siocgifflags, request)[:18])[1]
        fcntl.ioctl(sock, siocsifflags, struct.pack("16sH", os.fsencode(name), flags | iff_up))
    finally:
        os.close(sock)


def sethostname(name: str) -> None:
    encoded = os.fsencode(name)
    _check(_libc.sethostname(encoded, len(encoded)), "sethostname")
