"""The storage-driver conformance suite, as pytest collects it.

Run it as root: ``pytest --pyargs pydock.testing --pydock-driver NAME`` (see
:mod:`pydock.testing.conformance` for the cases and :mod:`pydock.testing.pytest_plugin` for the
option). Each case runs in its own temporary storage root.
"""

from __future__ import annotations

from pathlib import Path

from pydock.testing.conformance import Case
from pydock.testing.pytest_plugin import run_conformance_case


def test_case(pydock_driver_name: str, conformance_case: Case, tmp_path: Path) -> None:
    run_conformance_case(conformance_case, pydock_driver_name, tmp_path)
