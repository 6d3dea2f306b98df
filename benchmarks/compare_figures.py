"""compare.py's figures: the labels of what is measured, the targets, medians and ratios.

The copy driver's prepare step is a derived figure, computed here from two measured ones.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from compare_measure import Series
from compare_trees import LARGE, SMALL

# Labels of the measured commands; the tables and the targets refer to them.
PYDOCK_OVERLAY = "pydock run --rm --storage overlay"
PYDOCK_COPY = "pydock run --rm --storage copy"
PYDOCK_OVERLAY_KEEP = "pydock run --storage overlay (no --rm)"
PYDOCK_COPY_KEEP = "pydock run --storage copy (no --rm)"
COPY_PREPARE = "copy prepare (copy - overlay, no --rm)"
RUNC = "runc run"
PODMAN_OVERLAY = "podman run --rm (overlay)"
PODMAN_VFS = "podman run --rm (vfs)"
# On a network: pydock's bridge, podman's own default network (netavark's bridge).
PYDOCK_BRIDGE = "pydock run --rm --storage overlay --network bridge"
PODMAN_BRIDGE = "podman run --rm (overlay, default network)"
CP_A = "cp -a"
BASELINES = (RUNC, PODMAN_OVERLAY, PODMAN_VFS, CP_A)
PYDOCK_FIGURES = (PYDOCK_OVERLAY, PYDOCK_COPY, COPY_PREPARE)
# --baseline: another pydock (an earlier checkout, say), timed the same way.
BASELINE_OVERLAY = "baseline pydock run --rm --storage overlay"
# The most that a change measured against --baseline may add to a run.
BASELINE_LIMIT_SECONDS = 0.010


@dataclass(frozen=True)
class Target:
    """What the project is measured against: pydock's figure / a baseline <= limit."""

    what: str
    image: str
    figure: str
    baseline_image: str
    baseline: str
    limit: float


TARGETS = (
    Target("overlay run vs podman run (overlay), small image", SMALL, PYDOCK_OVERLAY,
           SMALL, PODMAN_OVERLAY, 0.35),
    Target("overlay run vs runc run, small image", SMALL, PYDOCK_OVERLAY, SMALL, RUNC, 2.5),
    # Issue 13: on the default network, no slower than podman on its default network.
    Target("bridge run vs podman run on its default network, small image", SMALL,
           PYDOCK_BRIDGE, SMALL, PODMAN_BRIDGE, 1.0),
    Target("overlay run, large image vs small image", LARGE, PYDOCK_OVERLAY,
           SMALL, PYDOCK_OVERLAY, 1.10),
    Target("copy prepare vs cp -a, large image", LARGE, COPY_PREPARE, LARGE, CP_A, 1.10),
)


@dataclass(frozen=True)
class Figure:
    """A median (and, when measured directly, min and max) in seconds."""

    median: float
    low: float | None = None
    high: float | None = None
    runs: int = 0


def figures(all_series: list[Series]) -> dict[tuple[str, str], Figure]:
    """(image, label) -> figure, for every series that ran, plus the derived copy prepare."""
    found = {(s.image, s.label): Figure(statistics.median(s.times), min(s.times),
                                        max(s.times), len(s.times))
             for s in all_series if s.error is None and s.times}
    # The copy driver's prepare is not visible from outside pydock: it is what a copy
    # container costs more than an overlay one (whose prepare is three empty
    # directories), both without --rm so that deleting the copy is not counted.
    copy, overlay = found.get((LARGE, PYDOCK_COPY_KEEP)), found.get((LARGE, PYDOCK_OVERLAY_KEEP))
    if copy is not None and overlay is not None:
        found[LARGE, COPY_PREPARE] = Figure(copy.median - overlay.median)
    return found


def difference(found: dict[tuple[str, str], Figure], image: str, figure: str,
               baseline: str) -> float | None:
    """Seconds that ``figure`` takes more than ``baseline`` (medians, same image)."""
    ours, theirs = found.get((image, figure)), found.get((image, baseline))
    if ours is None or theirs is None:
        return None
    return ours.median - theirs.median


def ratio(found: dict[tuple[str, str], Figure], image: str, figure: str,
          baseline_image: str, baseline: str) -> float | None:
    ours, theirs = found.get((image, figure)), found.get((baseline_image, baseline))
    if ours is None or theirs is None or theirs.median <= 0:
        return None
    return ours.median / theirs.median
