"""pydock's conformance suite (:mod:`pydock.testing.conformance`) run against this driver, with
each case's storage root on a fresh btrfs filesystem: off btrfs every case would be skipped as
unavailable."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydock.testing.conformance import CASES, Case, run_case


@pytest.mark.parametrize("case", CASES, ids=str)
def test_conformance(case: Case, btrfs: Path) -> None:
    run_case(case, "btrfs", btrfs / case.name)
