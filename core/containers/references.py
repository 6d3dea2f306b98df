"""What a user may name a container by: its name, its id, or a prefix of its id.

Docker's order, which scripts rely on (``id=$(docker run -d ...)``, ``docker rm 3f2a``):
a container whose name is exactly the reference wins, then one whose full id is, then the
one container whose id starts with it. A prefix that two ids share names neither: guessing
would stop or remove the wrong container, so it is an error that lists them.
"""

from __future__ import annotations

import re

from pydock.core.containers.state import CorruptRecord, StateStore
from pydock.core.errors import PydockError

# An id prefix is lowercase hex, as ids are; anything else can only be a name.
_ID_PREFIX = "[0-9a-f]{1,64}"


def resolve(state: StateStore, reference: str) -> str:
    """The name of the container ``reference`` names; PydockError if none or several."""
    path = state.path(reference)  # refuses what cannot be a name ("../x") in one line
    if path.is_dir():
        return reference
    if not re.fullmatch(_ID_PREFIX, reference):
        raise PydockError(f"no such container: {reference}")
    matches = []
    for name, container_id in _ids(state):
        if container_id == reference:
            return name
        if container_id.startswith(reference):
            matches.append(name)
    if not matches:
        raise PydockError(f"no such container: {reference}")
    if len(matches) > 1:
        raise PydockError(f"id prefix {reference!r} is ambiguous: it matches containers "
                          f"{', '.join(sorted(matches))}; give more of the id")
    return matches[0]


def _ids(state: StateStore) -> list[tuple[str, str]]:
    """(name, id) of every container; a corrupt record by what can be salvaged of its id,
    so that ``rm -f`` by id still finds it."""
    found = []
    for name in state.names():
        try:
            container_id = state.load(name).id
        except CorruptRecord:
            container_id = state.salvage(name).id
        except PydockError:  # removed meanwhile
            continue
        if container_id:
            found.append((name, container_id))
    return found
