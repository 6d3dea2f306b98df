#!/usr/bin/env bash
# Sets pydock up, then runs everything CI runs: ruff, mypy and the test suite
# (real containers, in temporary storage roots; needs root).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/pytest "$@"
