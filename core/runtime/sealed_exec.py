"""The container's last exec: through pydock's exec helper, run from a sealed memfd.

Why (CVE-2019-5736, runc's "/proc/self/exe" breakout): while a process execs, whatever
the kernel reaches as /proc/self/exe is that process's own binary, and pydock's processes
run the host's Python. Were they to exec the container's command themselves, a command
that resolves to ``#!/proc/self/exe`` (an image's ENTRYPOINT, a script an admin
``exec``\\ s; an ELF whose interpreter is /proc/self/exe does the same) would start the host's
Python inside the container: the container could keep a descriptor to that binary and,
once no pydock process runs it any more, rewrite the interpreter every host script runs.

So pydock execs a tiny static program of its own (``exec_helper/exec_helper.c``, about a
kilobyte, no libc) from a memfd that is sealed against writes, and that program execs the
command. At the command's exec, /proc/self/exe is the sealed copy, private to this
process, which nothing can write. runc did the same with its "runc-dmz"; a Python
interpreter cannot re-exec itself in a sealed copy as runc does, because inside the
container's root it would find no standard library to start with.

The command is looked up on PATH here, before the helper runs, as runc does with Go's
LookPath; an exec that fails even so is reported by the helper as ``errno N`` on the error
pipe (:func:`exec_error` turns it into the message docker prints).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
from typing import NoReturn

from pydock.core.errors import EXIT_PYDOCK_ERROR

HELPER_NAME = "pydock-exec-helper"
# Where the helper expects the write end of the error pipe (exec_helper.c's ERROR_FD).
ERROR_FD = 3
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
# The command is there and cannot be run (a shell's 126); any other failure (E2BIG, ENOMEM
# ...) is pydock's 125, as docker reports a runtime's error.
_NOT_EXECUTABLE = frozenset({errno.EACCES, errno.ENOEXEC, errno.EISDIR, errno.EPERM,
                             errno.ENOTDIR})
_SEALS = fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE


class ExecFailed(Exception):
    """The command cannot be exec'd: the exit code and docker's message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def helper_path(machine: str | None = None) -> str:
    """The committed helper binary for ``machine`` (default: this one's)."""
    return os.path.join(os.path.dirname(__file__), "exec_helper", machine or os.uname().machine)


def sealed_helper() -> int:
    """A close-on-exec memfd holding the helper, sealed: no one can write, grow or shrink
    it, or unseal it. One per container process: it is nobody else's file either."""
    try:
        with open(helper_path(), "rb") as source:
            program = source.read()
    except FileNotFoundError:
        raise OSError(errno.ENOEXEC, f"pydock has no exec helper for {os.uname().machine} "
                                     "machines (it has them for x86_64 and aarch64)") from None
    fd = os.memfd_create(HELPER_NAME, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.write(fd, program)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
    except BaseException:
        os.close(fd)
        raise
    return fd


def look_path(command: str, env: dict[str, str]) -> str:
    """``command``'s path as exec will take it: a name with no slash is looked for on the
    environment's PATH (the first executable regular file), as Go's LookPath does for
    docker and runc. ExecFailed with docker's message if there is none."""
    if "/" in command:
        return command
    if command:
        for directory in env.get("PATH", os.defpath).split(":"):
            candidate = os.path.join(directory or ".", command)
            try:
                mode = os.stat(candidate).st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and os.access(candidate, os.X_OK):
                return candidate
    raise ExecFailed(EXIT_NOT_FOUND,
                     f"exec: {_quoted(command)}: executable file not found in $PATH")


def exec_through_helper(helper_fd: int, path: str, argv: list[str], env: dict[str, str],
                        error_fd: int) -> NoReturn:
    """Exec the helper, which execs ``path`` with ``argv`` and ``env``; ``error_fd`` (the
    error pipe's write end) is handed to it as fd 3. Every other fd above 2 must be closed
    already, but for ``helper_fd`` (close-on-exec, like ``error_fd``). ExecFailed if the
    arguments and environment are too big to exec."""
    if helper_fd == ERROR_FD:
        moved = fcntl.fcntl(helper_fd, fcntl.F_DUPFD_CLOEXEC, ERROR_FD + 1)
        os.close(helper_fd)
        helper_fd = moved
    if error_fd != ERROR_FD:
        os.dup2(error_fd, ERROR_FD, inheritable=True)
    else:  # dup2 onto itself would leave it close-on-exec, and the helper without it
        os.set_inheritable(ERROR_FD, True)
    try:
        os.execve(helper_fd, [HELPER_NAME, path, *argv], env)
    except OSError as exc:
        if exc.errno != errno.E2BIG:
            raise
        # The helper takes the command's arguments and environment: too big for one exec,
        # too big for the other, and the error is the command's (as docker says it).
        raise exec_error(argv[0], exc.errno) from None


def exec_error(command: str, error: int) -> ExecFailed:
    """What docker says when exec'ing ``command`` failed with errno ``error``."""
    quoted = _quoted(command)
    if error == errno.ENOENT:
        return ExecFailed(EXIT_NOT_FOUND, f"exec {quoted}: no such file or directory")
    code = EXIT_NOT_EXECUTABLE if error in _NOT_EXECUTABLE else EXIT_PYDOCK_ERROR
    return ExecFailed(code, f"exec {quoted}: {os.strerror(error)}")


def _quoted(command: str) -> str:
    # Quoted and escaped as docker's %q: a command from the image or the command line may
    # hold a newline or a terminal's escape sequence, and the error must stay one plain line.
    return json.dumps(command)


def helper_errno(report: str) -> int | None:
    """The errno of the helper's ``errno N`` report, or None if ``report`` is not one."""
    word, _, number = report.partition(" ")
    return int(number) if word == "errno" and number.isdigit() else None
