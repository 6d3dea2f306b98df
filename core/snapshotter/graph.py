"""The snapshot graph: every snapshot by key, its kind, parent, labels and times, in one file.

containerd's own snapshotters keep this in a bolt database; here it is one JSON document,
``metadata.json``, replaced atomically (written under a hidden name, fsynced, renamed) after
every change. Its rename is the moment a change happens: storage is made before it and
removed after it, so a crash at any point leaves the graph as it was before or after the
change, plus storage nothing names, which the next start removes.

Keys are containerd's, arbitrary strings (``default/3/extract-12 sha256:...``); they are never
used as file names. A snapshot's files are named by its ``id``, a number never reused in the
life of the root.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydock.core.errors import PydockError
from pydock.core.files import read_regular, write_json_atomic
from pydock.core.ids import HEX64

FORMAT = 1
ACTIVE, VIEW, COMMITTED = "active", "view", "committed"
KINDS = (ACTIVE, VIEW, COMMITTED)
# A graph of a million snapshots is some 300 MB of JSON; far past any real node's count.
MAX_METADATA_BYTES = 1 << 30


@dataclass
class Snapshot:
    id: int
    kind: str
    parent: str
    labels: dict[str, str]
    created: int  # nanoseconds since the epoch, as containerd's Info carries them
    updated: int
    # The driver's container holding an active or view snapshot's files ("" once committed).
    container: str = ""
    # A committed snapshot's disk usage, measured when it was committed: (bytes, inodes).
    usage: tuple[int, int] = (0, 0)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "parent": self.parent, "labels": self.labels,
                "created": self.created, "updated": self.updated,
                "container": self.container, "usage": list(self.usage)}

    @classmethod
    def from_json(cls, data: Any) -> Snapshot:
        try:
            snapshot = cls(id=data["id"], kind=data["kind"], parent=data["parent"],
                           labels=dict(data["labels"]), created=data["created"],
                           updated=data["updated"], container=data["container"],
                           usage=(data["usage"][0], data["usage"][1]))
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"a snapshot entry is malformed ({exc})") from None
        if (not isinstance(snapshot.id, int) or snapshot.kind not in KINDS
                or not isinstance(snapshot.parent, str)
                or not all(isinstance(v, str)
                           for v in (*snapshot.labels, *snapshot.labels.values()))
                or not isinstance(snapshot.created, int) or not isinstance(snapshot.updated, int)
                or (snapshot.kind == COMMITTED) != (snapshot.container == "")
                or (snapshot.container and not re.fullmatch(HEX64, snapshot.container))):
            raise ValueError(f"snapshot {snapshot.id} is malformed")
        return snapshot


@dataclass
class Graph:
    driver: str
    next_id: int = 1
    snapshots: dict[str, Snapshot] = field(default_factory=dict)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1

    def children(self, key: str) -> list[str]:
        return [k for k, s in self.snapshots.items() if s.parent == key]

    def chain(self, key: str) -> list[Snapshot]:
        """The committed snapshots below ``key``'s snapshot, bottom first."""
        found = []
        parent = self.snapshots[key].parent
        while parent:
            snapshot = self.snapshots[parent]
            found.append(snapshot)
            parent = snapshot.parent
        return found[::-1]

    def save(self, path: Path) -> None:
        write_json_atomic(path, {
            "format": FORMAT, "driver": self.driver, "next_id": self.next_id,
            "snapshots": {key: s.to_json() for key, s in self.snapshots.items()}})

    @classmethod
    def load(cls, path: Path) -> Graph | None:
        """The graph stored at ``path``; None if there is none yet."""
        try:
            data = json.loads(read_regular(str(path), MAX_METADATA_BYTES, "snapshot metadata"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, PydockError) as exc:
            raise PydockError(f"cannot read {path}: {exc}") from None
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, this pydock reads {FORMAT}")
            graph = cls(driver=data["driver"], next_id=data["next_id"],
                        snapshots={key: Snapshot.from_json(s)
                                   for key, s in data["snapshots"].items()})
            _check(graph)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PydockError(f"{path} is not snapshot metadata pydock wrote: {exc}") from None
        return graph


def _check(graph: Graph) -> None:
    """Every parent exists and is committed, ids are unique and below next_id: what the rest
    of the code may then take for granted."""
    if not isinstance(graph.driver, str) or not isinstance(graph.next_id, int):
        raise ValueError("driver or next_id is malformed")
    ids = [s.id for s in graph.snapshots.values()]
    if len(set(ids)) != len(ids) or any(not 0 < i < graph.next_id for i in ids):
        raise ValueError("snapshot ids are not unique, or not below next_id")
    for key, snapshot in graph.snapshots.items():
        parent = graph.snapshots.get(snapshot.parent) if snapshot.parent else None
        if snapshot.parent and (parent is None or parent.kind != COMMITTED):
            raise ValueError(f"the parent of {key!r} is missing or not committed")
    # A cycle through parents would make chain() loop: committed snapshots are made from an
    # existing parent only, so a stored graph has none unless edited by hand.
    for key in graph.snapshots:
        seen = set()
        while key:
            if key in seen:
                raise ValueError(f"the parents of {key!r} form a cycle")
            seen.add(key)
            key = graph.snapshots[key].parent
