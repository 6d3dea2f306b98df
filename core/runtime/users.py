"""Who the container's command runs as: ``-u`` / the image's ``User``, resolved the docker way.

Names are looked up by reading the image's own ``/etc/passwd`` and ``/etc/group`` as
text, never through the host's NSS (which would answer with the *host's* users). It
runs in the container's first process after pivot_root, so the files read are the
container's whatever symlinks the image holds: there is no way out of the root left.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydock.core.errors import PydockError
from pydock.core.files import read_regular

# A user spec as docker takes it: NAME or UID, optionally :GROUP or :GID.
# Compiled (and cached) by re on first use: only runs with -u or an image User check it.
USER_SPEC = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?"
_MAX_ID = 2**32 - 2
_MAX_FILE = 1 << 20


class Credentials(NamedTuple):
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def validate_user_spec(spec: str) -> None:
    if not re.fullmatch(USER_SPEC, spec):
        raise PydockError(f"invalid user {spec!r}: expected NAME|UID[:GROUP|GID]")
    for part in spec.split(":"):
        if part.isdigit() and int(part) > _MAX_ID:
            raise PydockError(f"invalid user {spec!r}: id {part} is out of range")


def resolve(spec: str, passwd: str, group: str) -> Credentials:
    """Credentials for ``spec`` given the text of the image's passwd and group files."""
    user, _, group_spec = spec.partition(":")
    users = _table(passwd, 7)
    entry = next((e for e in users if (e[2] if user.isdigit() else e[0]) == user), None)
    if entry is None and not user.isdigit():
        raise PydockError(f"unable to find user {user}: no matching entries in passwd file")
    uid = int(user) if user.isdigit() else _id(entry, 2)
    gid = _id(entry, 3) if entry is not None else 0
    groups = _table(group, 4)
    if group_spec:
        match = next((g for g in groups if (g[2] if group_spec.isdigit() else g[0]) == group_spec),
                     None)
        if match is None and not group_spec.isdigit():
            raise PydockError(f"unable to find group {group_spec}: no matching entries in "
                              "group file")
        gid = int(group_spec) if group_spec.isdigit() else _id(match, 2)
    # Supplementary groups: those listing the user by name (docker adds them unless a
    # group was given explicitly).
    supplementary: list[int] = []
    if entry is not None and not group_spec:
        supplementary = [_id(g, 2) for g in groups if entry[0] in g[3].split(",")]
    home = entry[5] if entry is not None and entry[5] else ("/root" if uid == 0 else "/")
    return Credentials(uid, gid, tuple(dict.fromkeys([gid, *supplementary])), home)


def read_small(path: str) -> str:
    """A passwd-like file's text, or "" if it is missing.

    The image or the container's root decides what is there: a FIFO at /etc/passwd would
    hang the container's start (or an exec -u) for good, so only a regular file of sane
    size is read (:func:`pydock.core.files.read_regular`).
    """
    try:
        data = read_regular(path, _MAX_FILE)
    except (FileNotFoundError, NotADirectoryError):
        return ""
    return data.decode(errors="replace")


def _table(text: str, fields: int) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            rows.append(parts)
    return rows


def _id(row: list[str] | None, index: int) -> int:
    assert row is not None
    value = row[index]
    if not value.isdigit() or int(value) > _MAX_ID:
        raise PydockError(f"invalid id {value!r} for {row[0]!r} in the image's passwd/group")
    return int(value)
