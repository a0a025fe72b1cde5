#!/usr/bin/env bash
# Sets up (pinned deps, build, install) and runs the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
bash scripts/setup.sh
# Run from tests/ against the installed package (not the source tree), as a user would import it.
# Slow cases (real-model calibration, long benchmarks-as-tests) are opt-in: pytest -m slow.
$py -m pytest -q -p no:cacheprovider -m "not slow" "$@"
