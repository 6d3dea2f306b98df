#!/usr/bin/env bash
# Sets pydock up, then runs everything CI runs: ruff, mypy, the test suite (real
# containers, in temporary storage roots; needs root) and the example driver's tests.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/mypy plugins_example/pydock_btrfs
.venv/bin/pytest "$@"
# The example third-party driver is its own distribution with its own tests (which
# include the conformance suite, run on a loopback btrfs).
.venv/bin/pytest plugins_example/tests
