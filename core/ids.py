"""What pydock's ids look like: container ids and sha256 content digests.

A container id (64 lowercase hex digits, docker's form) names a container's record, its
storage under each driver and its cgroups, so every layer that finds or checks one needs
the same pattern: ``runtime`` (an id becomes a cgroup path and must never climb out of it),
``containers`` (records and leftovers) and ``bench``. A digest (``sha256:`` and 64 hex
digits) names a layer (its diff id) or an image (its config's digest) in the image store
and in every archive pydock reads. Both sit here on the ground floor because ``runtime``
is below ``containers``, where ids are made, and must not import it.

The patterns are strings, compiled by :mod:`re` (and cached there) on first use: a
``pydock run`` that never checks one does not pay for compiling it.
"""

from __future__ import annotations

import re

HEX64 = "[0-9a-f]{64}"
CONTAINER_ID = HEX64
DIGEST = f"sha256:({HEX64})"  # group 1: the hex digits alone


def is_container_id(text: str) -> bool:
    return re.fullmatch(CONTAINER_ID, text) is not None


def is_digest(text: str) -> bool:
    return re.fullmatch(DIGEST, text) is not None
