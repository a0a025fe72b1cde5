#!/usr/bin/env bash
# Smoke test of the Arm benchmark on x86-64: bench/tables/arm_peers.py (slimnn's aarch64 wheel against torch's
# aarch64 build) and a slice of the Python tests, run end to end by Debian's aarch64 python3.11 under
# qemu-aarch64. It shows that the benchmark, the Python layers and the wheel work on aarch64; the TIMINGS
# MEAN NOTHING (emulation speed is not hardware speed). docs/arm.md (Benchmark under qemu) says what it does.
#
#   bash scripts/arm_bench_qemu.sh                      # -cpu max (neon, dotprod, i8mm), then -cpu cortex-a53 (neon)
#   SLIMNN_QEMU_CPUS="max" bash scripts/arm_bench_qemu.sh
#   SLIMNN_QEMU_TESTS="" bash scripts/arm_bench_qemu.sh  # skip the pytest slice
#
# First run: builds the wheel (scripts/arm_wheel.sh, ~10 min wall on a shared 2-core box) and downloads
# torch 2.13.0 for aarch64 with the CUDA libraries it links (2.6 GB of wheels from PyPI, 3.9 GB unpacked),
# all cached under build/ (gitignored). Not in CI (size). Exit status: 0 ran, 1 a failure, 77 skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
cpus=${SLIMNN_QEMU_CPUS:-max cortex-a53}
tests=${SLIMNN_QEMU_TESTS-tests/test_qgemm.py::test_op_matches_reference tests/test_qgemm.py::test_op_every_m tests/test_qgemm.py::test_isas_agree}
deps=$repo/build/arm-pydeps
root=$repo/build/arm-bench-root
for t in qemu-aarch64 python3 pip; do
  command -v "$t" >/dev/null || { echo "arm_bench_qemu.sh: SKIPPED: needs $t" >&2; exit 77; }
done

# 1. slimnn's aarch64 wheel, rebuilt when a source is newer than it.
whl=$(ls -t build/arm-dist/slimnn-*-linux_aarch64.whl 2>/dev/null | head -n 1 || true)
if [ -z "$whl" ] || [ -n "$(find src csrc cmake CMakeLists.txt pyproject.toml -newer "$whl" \
    \( -name '*.py' -o -name '*.cc' -o -name '*.h' -o -name '*.inc' -o -name '*.txt' -o -name '*.cmake' -o -name '*.toml' \) \
    -print -quit)" ]; then
  rc=0; bash scripts/arm_wheel.sh build/arm-dist || rc=$?
  [ "$rc" = 0 ] || exit "$rc"
  whl=$(ls -t build/arm-dist/slimnn-*-linux_aarch64.whl | head -n 1)
fi

# 2. torch and numpy for aarch64 (PyPI's torch 2.13.0 aarch64 wheel is the CUDA build: libtorch_cpu.so
# itself links libcudart and libcupti, so the nvidia-* wheels are needed to import it, with no GPU).
# pip's --platform takes exact tags, so every manylinux level the wheels use is listed. nccl: PyPI has no
# aarch64 wheel of the 2.29.7 torch pins; 2.32.3 (same libnccl.so.2) is taken with --no-deps.
if [ ! -e "$deps/site/.done" ]; then
  echo "== torch 2.13.0, numpy, pytest, hypothesis for aarch64 (downloaded into $deps/whl, unpacked into $deps/site)"
  plat=(--only-binary=:all: --python-version 3.11 --implementation cp --platform linux_aarch64 --platform any
        --platform manylinux2014_aarch64)
  for v in 17 24 25 26 27 28; do plat+=(--platform "manylinux_2_${v}_aarch64"); done
  mkdir -p "$deps/whl"
  pip download -q "${plat[@]}" -d "$deps/whl" --no-deps torch==2.13.0 nvidia-nccl-cu13==2.32.3
  pip download -q "${plat[@]}" -d "$deps/whl" \
    'cuda-toolkit[cublas,cudart,cufft,cufile,cupti,curand,cusolver,cusparse,nvjitlink,nvrtc,nvtx]==13.0.3' \
    nvidia-cudnn-cu13==9.20.0.48 nvidia-cusparselt-cu13==0.8.1 nvidia-nvshmem-cu13==3.4.5 \
    filelock typing-extensions sympy networkx jinja2 fsspec numpy pytest hypothesis
  rm -rf "$deps/site"; mkdir -p "$deps/site"
  for f in "$deps"/whl/*.whl; do unzip -q -o "$f" -d "$deps/site"; done  # a wheel is a zip of its site-packages
  touch "$deps/site/.done"
fi
rm -rf "$deps/slimnn"; mkdir -p "$deps/slimnn"
python3 -m zipfile -e "$whl" "$deps/slimnn"
ls "$deps"/slimnn/slimnn/_C.cpython-311-aarch64-linux-gnu.so >/dev/null

# 3. The emulated root: Debian's arm64 python (from arm_wheel.sh) plus an Arm /proc/cpuinfo and MIDR_EL1
# registers. qemu-user opens a path under -L first when it exists there; without these, torch's cpuinfo
# library and oneDNN's xbyak_aarch64 read the x86 host's /proc/cpuinfo and sysfs and torch._C dies with
# SIGSEGV at import. They describe a Neoverse N1 (0x413fd0c1); they only steer torch's tuning tables:
# ISA features come from the hwcaps qemu gives for each -cpu (slimnn reads only those).
mkdir -p "$root/proc"
ln -sfn ../arm64-python/usr "$root/usr"
ln -sfn ../arm64-python/lib "$root/lib"
: > "$root/proc/cpuinfo"
for i in $(seq 0 $(($(nproc) - 1))); do
  printf 'processor\t: %d\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n' "$i" >> "$root/proc/cpuinfo"
  mkdir -p "$root/sys/devices/system/cpu/cpu$i/regs/identification"
  echo 0x00000000413fd0c1 > "$root/sys/devices/system/cpu/cpu$i/regs/identification/midr_el1"
done

# 4. Under each emulated CPU: the benchmark's smoke run, then the pytest slice.
export PYTHONPATH=$deps/slimnn:$deps/site PYTHONUNBUFFERED=1
for cpu in $cpus; do
  py=(qemu-aarch64 -cpu "$cpu" -L "$root" "$root/usr/bin/python3.11")
  echo "== -cpu $cpu: bench/tables/arm_peers.py --quick (EMULATED: the ratios below mean nothing about Arm hardware)"
  t0=$(date +%s)
  # Under qemu 7.2 (-cpu max, cortex-a53) torch's onednn dynamic int8 linear dies with SIGILL (-cpu
  # neoverse-n1 runs it), so the int8 peer here is qnnpack alone; on hardware arm_peers.py takes every engine.
  (cd /tmp && "${py[@]}" "$repo/bench/tables/arm_peers.py" --quick --torch-engines qnnpack) ||
    { echo "arm_bench_qemu.sh: FAILED: arm_peers.py under -cpu $cpu" >&2; exit 1; }
  echo "   (-cpu $cpu: benchmark took $(($(date +%s) - t0)) s wall)"
  # The tests only under -cpu max: under cortex-a53 (Armv8.0) torch's own float64 matmul (the tests'
  # reference) dies with SIGILL, torch alone in the stack. test_isas_agree forces neon and dotprod there.
  if [ -n "$tests" ] && [ "$cpu" = max ]; then
    echo "== -cpu $cpu: pytest $tests"
    t0=$(date +%s)
    # -p no:cacheprovider: nothing written into the tree; the wheel's slimnn (not src/) is on the path.
    "${py[@]}" -m pytest -q -p no:cacheprovider $tests ||
      { echo "arm_bench_qemu.sh: FAILED: pytest under -cpu $cpu" >&2; exit 1; }
    echo "   (-cpu $cpu: tests took $(($(date +%s) - t0)) s wall)"
  fi
done
echo "arm_bench_qemu.sh: OK (smoke test; the timings above are emulated and mean nothing)"
