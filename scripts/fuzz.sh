#!/usr/bin/env bash
# Builds the libFuzzer targets (csrc/fuzz) with clang + ASan + UBSan and runs each for a bounded time.
#
#   bash scripts/fuzz.sh            # 60 s per target
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh
#   SLIMNN_FUZZ_INSTALL=1 bash scripts/fuzz.sh   # apt-get install clang-14 + libclang-rt-14-dev if missing
#
# The corpus (seeded with valid blobs by fuzz_seeds) grows in build/fuzz/corpus/<target> across runs; a
# crashing input is written to build/fuzz/artifacts/ and replays with: build/fuzz/csrc/fuzz/fuzz_q8 <file>.
# Exit status: 0 clean, 1 a finding, 77 skipped (no clang with libFuzzer and installing not allowed).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
seconds=${FUZZ_SECONDS:-60}
build=build/fuzz

find_clang() {
  for c in clang++ clang++-18 clang++-17 clang++-16 clang++-15 clang++-14; do
    if command -v "$c" >/dev/null && echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long){return 0;}' |
        "$c" -x c++ -fsanitize=fuzzer -o /dev/null - 2>/dev/null; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

cxx=$(find_clang || true)
if [ -z "$cxx" ] && [ "${SLIMNN_FUZZ_INSTALL:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "fuzz.sh: installing clang-14 and libclang-rt-14-dev" >&2
  # Not fatal: without a package mirror the libFuzzer run is skipped (the Python fuzz tests still run).
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang-14 libclang-rt-14-dev >/dev/null 2>&1 || true
  cxx=$(find_clang || true)
fi
if [ -z "$cxx" ]; then
  echo "fuzz.sh: SKIPPED: no clang with libFuzzer (apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 77
fi

# OpenMP off: clang's libomp is not installed with it, and the fuzz target runs single-threaded anyway.
nice cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
  -DSLIMNN_BUILD_FUZZERS=ON -DSLIMNN_USE_OPENMP=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
  -Dpybind11_DIR="$($py -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v "$py")" >/dev/null
nice ninja -C "$build" fuzz_q8 fuzz_seeds >/dev/null

mkdir -p "$build/artifacts" "$build/corpus/q8" "$build/seeds/q8"
"$build/csrc/fuzz/fuzz_seeds" "$build/seeds/q8"

status=0
for target in q8; do
  echo "fuzz.sh: fuzz_$target for ${seconds}s"
  # -malloc_limit_mb: any single allocation over 256 MiB is a finding (a header must not make us allocate
  # more than its blob justifies); -max_len 16 KiB keeps shapes small so each input runs in microseconds.
  if ! nice "$build/csrc/fuzz/fuzz_$target" -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
      -malloc_limit_mb=256 -print_final_stats=1 -artifact_prefix="$build/artifacts/" \
      "$build/corpus/$target" "$build/seeds/$target" 2>"$build/fuzz_$target.log"; then
    status=1
    tail -60 "$build/fuzz_$target.log" >&2
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)|cov:" "$build/fuzz_$target.log" | tail -4
done
exit $status
