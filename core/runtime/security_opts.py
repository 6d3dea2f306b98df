"""``--security-opt``: of docker's security options, pydock has no-new-privileges and seccomp.

With no-new-privileges, the container's processes and those ``exec`` starts in it run with
the kernel's ``no_new_privs`` flag: no exec grants them anything, so a setuid-root binary
runs with the caller's uid, and file capabilities are ignored.

``seccomp=PROFILE.json`` filters the container's system calls with that profile (docker's
JSON format) instead of docker's default one, ``seccomp=unconfined`` not at all, and
``seccomp=builtin`` is the default (:mod:`pydock.core.runtime.seccomp`). Docker's others
(apparmor, label, systempaths ...) would be promises pydock does not keep, so they are
refused, not ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydock.core.errors import PydockError

NO_NEW_PRIVILEGES = "no-new-privileges"
SECCOMP = "seccomp"
# The spellings of Go's strconv.ParseBool, which docker reads the value with.
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def split(option: str) -> tuple[str, str | None]:
    """``KEY=VALUE``, or docker's older ``KEY:VALUE``, as (KEY, VALUE); VALUE is None for a
    bare KEY. PydockError for a key pydock does not have, or an empty value."""
    key, separator, value = option.partition("=")
    if not separator and ":" in option:
        key, separator, value = option.partition(":")
    if key not in (NO_NEW_PRIVILEGES, SECCOMP):
        raise PydockError(f"--security-opt {option!r} is not supported: pydock has only "
                          f"{NO_NEW_PRIVILEGES}[=true|false] and {SECCOMP}=PROFILE")
    if key == SECCOMP and not value:  # docker: only no-new-privileges goes without a value
        raise PydockError(f"invalid --security-opt {option!r}: expected {SECCOMP}=PROFILE.json, "
                          f"{SECCOMP}=unconfined or {SECCOMP}=builtin")
    return key, value if separator else None


def no_new_privileges(options: Sequence[str]) -> bool:
    """Whether ``--security-opt`` values ``options`` ask for no-new-privileges (the last
    one that names it decides, as in docker). PydockError for an option pydock lacks.

    Docker's spellings: ``no-new-privileges``, ``no-new-privileges=true|false`` and the
    older ``no-new-privileges:true|false``.
    """
    enabled = False
    for option in options:
        key, value = split(option)
        if key != NO_NEW_PRIVILEGES:
            continue
        if value is None or value in _TRUE:
            enabled = True
        elif value in _FALSE:
            enabled = False
        else:
            raise PydockError(f"invalid --security-opt {option!r}: expected "
                              f"{NO_NEW_PRIVILEGES}, {NO_NEW_PRIVILEGES}=true or =false")
    return enabled
