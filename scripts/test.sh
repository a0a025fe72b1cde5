#!/usr/bin/env bash
# Sets up (pinned deps, build, install; see setup.sh) and runs the test suite. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
bash scripts/setup.sh
# Slow cases (real-model calibration, long benchmarks-as-tests) are opt-in: pytest -m slow.
echo "==> tests: pytest -m 'not slow' $*"
"$py" -m pytest -q -p no:cacheprovider -m "not slow" "$@"
