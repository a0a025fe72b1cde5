#!/usr/bin/env bash
# Sets up (pinned deps, build, install) and runs the demo: compress a model and print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
bash scripts/setup.sh
cd /tmp && $py -m slimnn.app.demo "$@"
