"""What a container id looks like: 64 lowercase hex digits, docker's form.

An id names a container's record, its storage under each driver and its cgroups, so every
layer that finds or checks one needs the same pattern: ``runtime`` (an id becomes a cgroup path
and must never climb out of it), ``containers`` (records and leftovers) and ``bench``. It sits
here on the ground floor because ``runtime`` is below ``containers``, where ids are made, and
must not import it.
"""

from __future__ import annotations

import re

CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
