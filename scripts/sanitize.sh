#!/usr/bin/env bash
# Runs the fast test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of the extension.
#
#   bash scripts/sanitize.sh                 # build build/asan, run the default test subset
#   bash scripts/sanitize.sh tests/test_fuzz.py -k q8   # extra args go to pytest (replacing the default paths)
#
# The extension is built into build/asan and placed in a private copy of the package (build/asan/pkg), so
# the developer build in src/slimnn/ is left alone. Python and torch are not instrumented, so the ASan and
# UBSan runtimes are preloaded (they must come first in the process). Leak detection is off: CPython and
# torch keep allocations alive until exit on purpose, which is not ours to report.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
build=build/asan
pkg=$build/pkg

# RelWithDebInfo: optimized like the real build (the same code paths and vector widths), with line numbers
# in the reports.
nice cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLIMNN_SANITIZE=ON -DSLIMNN_WERROR=ON \
  -Dpybind11_DIR="$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v "$py")" >/dev/null
nice ninja -C "$build" >/dev/null
rm -rf "$pkg"
mkdir -p "$pkg"
cp -r src/slimnn "$pkg/slimnn"
rm -f "$pkg"/slimnn/_C*.so
find "$pkg" -name __pycache__ -prune -exec rm -rf {} +
cp "$build"/_C*.so "$pkg/slimnn/"
echo "sanitizer build: $pkg/slimnn/$(basename "$build"/_C*.so)"

preload="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libubsan.so)"
for lib in $preload; do
  [ -f "$lib" ] || { echo "sanitize.sh: $lib not found (gcc's sanitizer runtimes are needed)" >&2; exit 2; }
done

# The default subset: every test file except the slow marker. Tests that start subprocesses inherit the
# environment below, so the children run instrumented too.
if [ $# -eq 0 ]; then
  set -- tests -m "not slow"
fi
# --capture=sys: pytest then captures Python's output only, so a sanitizer report (written to fd 2 just
# before the runtime stops the process) reaches the terminal instead of dying with pytest's capture file.
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:halt_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export PYTHONPATH="$PWD/$pkg${PYTHONPATH:+:$PYTHONPATH}"
export SLIMNN_SANITIZED=1
LD_PRELOAD="$preload" exec $py -m pytest -q -p no:cacheprovider --capture=sys "$@"
