#!/usr/bin/env bash
# Sets up (pinned deps, build, install; see setup.sh) and runs the demo: compress a model and print the report.
# The report and the saved model go to ./slimnn-demo/ under the directory this is run from (--out DIR to
# change it); extra args go to `slimnn demo` (--help lists them).
set -euo pipefail
caller=$PWD
cd "$(dirname "$0")/.."
source scripts/python_env.sh
bash scripts/setup.sh
cd "$caller"
echo "==> slimnn demo (files: $caller/slimnn-demo/ unless --out says otherwise)"
# PYTHONSAFEPATH: the current directory is not put on sys.path (Python 3.11+), so the installed slimnn
# runs even when started from a source checkout.
PYTHONSAFEPATH=1 exec "$py" -m slimnn demo "$@"
