"""Thin ctypes declarations for libseccomp, the library runc, crun and podman build their
seccomp filters with.

This is a library binding, not a set of system calls, so it does not live in
:mod:`pydock.core.syscalls`: libseccomp turns a rule list into the BPF program the kernel
runs (per architecture, with the syscall numbers, the 64-bit argument comparisons split
into 32-bit halves, and the multiplexed ``socketcall``/``ipc`` of 32-bit x86 handled), which
is exactly the part that must not be written by hand. Only the filter's child process
loads this module (:func:`pydock.core.runtime.seccomp.install`), never the CLI itself.

pydock has libseccomp generate the program and loads it itself
(:func:`pydock.core.runtime.seccomp.prepare` says why: a cache).

Each function raises :class:`OSError` with the errno libseccomp returns (it returns
``-errno``), as the :mod:`os` functions do.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence

# Debian's libseccomp2; the soname is stable since libseccomp 2.0.
_lib = ctypes.CDLL("libseccomp.so.2")

# scmp_filter_attr (seccomp.h).
ATTR_CTL_NNP = 3

# enum scmp_compare (seccomp.h), by the names docker's profiles use.
COMPARISONS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

# Action values (seccomp.h): ERRNO and TRACE carry a 16-bit value in their low bits.
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_ERRNO = 0x00050000
ACT_TRACE = 0x7FF00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000

# __NR_SCMP_ERROR: the name is no system call libseccomp knows.
_UNKNOWN_SYSCALL = -1


class _Version(ctypes.Structure):
    _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))


_lib.seccomp_version.restype = ctypes.POINTER(_Version)


def version() -> str:
    """The loaded library's version, "MAJOR.MINOR.MICRO": which system calls it knows by
    name, and so which a profile's rules reach, depends on it."""
    found = _lib.seccomp_version().contents
    return f"{found.major}.{found.minor}.{found.micro}"


class ArgCmp(ctypes.Structure):
    """struct scmp_arg_cmp: argument ``arg`` compared by ``op`` with ``datum_a`` (and, for
    SCMP_CMP_MASKED_EQ, ``arg & datum_a == datum_b``)."""

    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_uint),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))


_lib.seccomp_init.argtypes = (ctypes.c_uint32,)
_lib.seccomp_init.restype = ctypes.c_void_p
_lib.seccomp_release.argtypes = (ctypes.c_void_p,)
_lib.seccomp_release.restype = None
_lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
_lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
_lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
_lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
_lib.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
_lib.seccomp_rule_add_array.argtypes = (ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                        ctypes.c_uint, ctypes.POINTER(ArgCmp))
_lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)


def _check(result: int, what: str) -> None:
    if result < 0:
        raise OSError(-result, f"{what}: {os.strerror(-result)}")


class Filter:
    """A filter under construction (a libseccomp ``scmp_filter_ctx``); release it with
    :meth:`release` whether or not it was loaded."""

    def __init__(self, default_action: int) -> None:
        context = _lib.seccomp_init(default_action)
        if not context:
            raise OSError(0, "seccomp_init failed: invalid default action")
        self._context = ctypes.c_void_p(context)

    def set_attribute(self, attribute: int, value: int) -> None:
        _check(_lib.seccomp_attr_set(self._context, attribute, value), "seccomp_attr_set")

    def add_architecture(self, name: str) -> None:
        """Add the architecture ``name`` (libseccomp's spelling: x86_64, x86, x32 ...);
        ValueError for one libseccomp does not know. Adding one already there is no
        error: the native architecture is in every new filter."""
        token = _lib.seccomp_arch_resolve_name(name.encode())
        if not token:
            raise ValueError(f"unknown architecture {name!r}")
        result = _lib.seccomp_arch_add(self._context, token)
        if result != -17:  # -EEXIST
            _check(result, f"seccomp_arch_add {name}")

    def add_rule(self, action: int, syscall: int, comparisons: Sequence[ArgCmp]) -> None:
        array = (ArgCmp * len(comparisons))(*comparisons)
        _check(_lib.seccomp_rule_add_array(self._context, action, syscall, len(comparisons),
                                           array), "seccomp_rule_add")

    def export(self) -> bytes:
        """The BPF program libseccomp generates for the filter, as the kernel takes it (an
        array of struct sock_filter): :func:`pydock.core.syscalls.set_seccomp_filter`."""
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _check(_lib.seccomp_export_bpf(self._context, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_CUR)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)

    def release(self) -> None:
        _lib.seccomp_release(self._context)


def resolve_syscall(name: str) -> int | None:
    """The number libseccomp gives the system call ``name`` (negative pseudo-numbers for
    calls that exist only on some of the filter's architectures), None if unknown."""
    number = int(_lib.seccomp_syscall_resolve_name(name.encode()))
    return None if number == _UNKNOWN_SYSCALL else number
