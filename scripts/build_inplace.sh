#!/usr/bin/env bash
# Developer build: compiles the extension into build/dev and copies it next to the Python sources, so
# `PYTHONPATH=src python -m pytest` tests this tree without reinstalling. Extra args go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLIMNN_WERROR=ON \
  -Dpybind11_DIR="$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v "$py")" "$@" >/dev/null
ninja -C build/dev >/dev/null
# --remove-destination: a new inode, so a process that has the old library mapped keeps it intact
cp --remove-destination build/dev/_C*.so src/slimnn/
echo "built src/slimnn/$(basename build/dev/_C*.so)"
