#!/usr/bin/env bash
# The Arm paths, checked on an x86-64 machine (docs/arm.md): builds the native kernel test driver
# (tests/native) for the host and, with g++-aarch64-linux-gnu, for aarch64; runs the aarch64 one under
# qemu-aarch64 for three emulated CPUs (max: neon+dotprod+i8mm, cortex-a76: neon+dotprod, cortex-a53: neon),
# each forcing every ISA level it has against the portable reference (qgemm, q4gemm and the fp32 families:
# act, lowrank, attention, depthwise conv, spmm); and checks that the blobs the x86-64
# build writes (and the committed tests/native/data/x86_64_blobs.bin) load and give bit-identical results
# on the aarch64 portable path.
#
#   bash scripts/arm_check.sh
#   SLIMNN_ARM_INSTALL=1 bash scripts/arm_check.sh   # apt-get install g++-aarch64-linux-gnu qemu-user if missing
#
# Exit status: 0 all passed, 1 a failure, 77 skipped (no cross compiler or qemu, installing not allowed).
# About 4 minutes on 2 cores (two builds of the kernels; the emulated kernel tests take ~10-25 s per CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${SLIMNN_ARM_JOBS:-2}

have_tools() { command -v aarch64-linux-gnu-g++ >/dev/null && command -v qemu-aarch64 >/dev/null; }
if ! have_tools && [ "${SLIMNN_ARM_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "arm_check.sh: installing g++-aarch64-linux-gnu and qemu-user" >&2
  # Not fatal: without a package mirror the step is skipped.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null 2>&1 ||
    { DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null 2>&1; } || true
fi
if ! have_tools; then
  echo "arm_check.sh: SKIPPED: needs aarch64-linux-gnu-g++ and qemu-aarch64 (apt-get install g++-aarch64-linux-gnu qemu-user)" >&2
  exit 77
fi
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
common=(-DCMAKE_BUILD_TYPE=Release -DSLIMNN_WERROR=ON -DSLIMNN_BUILD_PYTHON=OFF -DSLIMNN_BUILD_CPP_TESTS=ON)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== native driver (host)"
cmake -S . -B build/native-host "${gen[@]}" "${common[@]}" >/dev/null
cmake --build build/native-host --target slimnn_test_kernels -j "$jobs" >/dev/null
build/native-host/tests/native/slimnn_test_kernels --write-blobs "$tmp/host_blobs.bin" \
  --read-blobs tests/native/data/x86_64_blobs.bin | tail -n 1

echo "== native driver (aarch64, cross-compiled)"
cmake -S . -B build/native-aarch64 "${gen[@]}" "${common[@]}" \
  -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-aarch64-linux-gnu.cmake" >/dev/null
cmake --build build/native-aarch64 --target slimnn_test_kernels -j "$jobs" >/dev/null
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
for cpu in max cortex-a76 cortex-a53; do
  echo "-- qemu-aarch64 -cpu $cpu"
  # Every kernel test once per emulated CPU (with this run's blobs); the committed blobs only read back.
  for blobs in "$tmp/host_blobs.bin" tests/native/data/x86_64_blobs.bin; do
    only=(); [ "$blobs" = "$tmp/host_blobs.bin" ] || only=(--only-blobs)
    out=$(qemu-aarch64 -cpu "$cpu" build/native-aarch64/tests/native/slimnn_test_kernels "${only[@]}" --read-blobs "$blobs" 2>&1) || {
      echo "$out"
      echo "arm_check.sh: FAILED under -cpu $cpu with $blobs" >&2
      exit 1
    }
    echo "$out" | grep -E "^ISAs|checks" | sed "s|^|   [$(basename "$blobs")] |"
  done
done
# The Python extension (_C, pybind11 bindings included) cross-compiled for aarch64: a build check only (no
# aarch64 Python here to import it). The host Python's headers stand in for the target's (LP64 on both; an
# extension module links no libpython); pybind11 names the file with the host's suffix. A real aarch64 wheel
# is built on aarch64 (docs/arm.md). SLIMNN_ARM_EXTENSION=0 skips this (about 1 min on 2 cores).
py=${PYTHON:-python3}
if [ "${SLIMNN_ARM_EXTENSION:-1}" = 1 ] && pybind_dir=$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())' 2>/dev/null); then
  echo "== Python extension (aarch64, cross-compiled; build check)"
  cmake -S . -B build/native-aarch64-py "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DSLIMNN_WERROR=ON \
    -DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/toolchain-aarch64-linux-gnu.cmake" -Dpybind11_DIR="$pybind_dir" \
    -DPython_EXECUTABLE="$(command -v "$py")" \
    -DPython_INCLUDE_DIR="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=BOTH -DCMAKE_FIND_ROOT_PATH_MODE_PACKAGE=BOTH >/dev/null
  cmake --build build/native-aarch64-py --target _C -j "$jobs" >/dev/null
  so=$(ls build/native-aarch64-py/_C*.so)
  aarch64-linux-gnu-readelf -h "$so" | grep -q "AArch64" || { echo "arm_check.sh: $so is not an aarch64 object" >&2; exit 1; }
  echo "   $(basename "$so"): aarch64 shared object"
fi
echo "arm_check.sh: all Arm checks passed"
