"""``--security-opt``: of docker's security options, pydock has no-new-privileges.

With it, the container's processes and those ``exec`` starts in it run with the kernel's
``no_new_privs`` flag: no exec grants them anything, so a setuid-root binary runs with the
caller's uid, and file capabilities are ignored. Docker's others (seccomp, apparmor, label,
systempaths ...) would be promises pydock does not keep, so they are refused, not ignored.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydock.core.errors import PydockError

NO_NEW_PRIVILEGES = "no-new-privileges"
# The spellings of Go's strconv.ParseBool, which docker reads the value with.
_TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})


def no_new_privileges(options: Sequence[str]) -> bool:
    """Whether ``--security-opt`` values ``options`` ask for no-new-privileges (the last
    one that names it decides, as in docker). PydockError for any other option.

    Docker's spellings: ``no-new-privileges``, ``no-new-privileges=true|false`` and the
    older ``no-new-privileges:true|false``.
    """
    enabled = False
    for option in options:
        key, separator, value = option.partition("=")
        if not separator and ":" in option:
            key, separator, value = option.partition(":")
        if key != NO_NEW_PRIVILEGES:
            raise PydockError(f"--security-opt {option!r} is not supported: pydock has only "
                              f"{NO_NEW_PRIVILEGES}[=true|false]")
        if not separator or value in _TRUE:
            enabled = True
        elif value in _FALSE:
            enabled = False
        else:
            raise PydockError(f"invalid --security-opt {option!r}: expected "
                              f"{NO_NEW_PRIVILEGES}, {NO_NEW_PRIVILEGES}=true or =false")
    return enabled
