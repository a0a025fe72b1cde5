#!/usr/bin/env bash
# Installs the pinned dev dependencies and builds + installs slimnn from this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
$py -m pip install -q -r requirements-dev.txt
$py -m pip install -q --no-build-isolation .
