#!/usr/bin/env bash
# Builds slimnn's wheel for aarch64 Linux on an x86-64 Debian machine, the way `pip wheel .` would on an
# Arm box: the PEP 517 backend (scikit-build-core) runs inside Debian's aarch64 python3.11 under
# qemu-aarch64 (so the wheel is tagged cp311-cp311-linux_aarch64 by the interpreter that will import it),
# and CMake compiles with g++-aarch64-linux-gnu against that Python's headers. Then the extension module is
# imported by the emulated Python (-cpu max, cortex-a53) and its kernel selection is printed. docs/arm.md
# (Wheels) says what this shows and what it does not.
#
#   bash scripts/arm_wheel.sh [OUT_DIR]     # default dist/; ~2 min of CPU (9.7 min wall on a shared, loaded 2-core box)
#
# Needs: g++-aarch64-linux-gnu, qemu-user, apt-get with Debian bookworm lists reachable (arm64 packages are
# downloaded into build/arm64-python, not installed), /usr/bin/python3.11 (Debian's, the same 3.11.2 as
# the arm64 one: it stands in for the target interpreter in CMake's FindPython, which cannot run a foreign
# binary), and scikit-build-core + pybind11 in the host python (pure Python: the emulated interpreter
# imports them). Exit status: 0 built and imported, 1 a failure, 77 skipped (a tool is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-dist}")
root=$PWD/build/arm64-python
for t in aarch64-linux-gnu-g++ qemu-aarch64 apt-get dpkg /usr/bin/python3.11 python3; do
  command -v "$t" >/dev/null || { echo "arm_wheel.sh: SKIPPED: needs $t" >&2; exit 77; }
done
host_site=$(python3 -c 'import scikit_build_core, os; print(os.path.dirname(os.path.dirname(scikit_build_core.__file__)))' 2>/dev/null) ||
  { echo "arm_wheel.sh: SKIPPED: needs scikit-build-core in python3" >&2; exit 77; }

if [ ! -x "$root/usr/bin/python3.11" ]; then
  echo "== Debian's aarch64 python3.11 (downloaded, unpacked into $root)"
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/debs"
  o=(-oAPT::Architecture=arm64 -oAPT::Architectures=arm64 -oDir::State::Lists="$root/lists" -oDir::Cache="$root/cache")
  apt-get "${o[@]}" update -qq >/dev/null
  (cd "$root/debs" && apt-get "${o[@]}" download -qq python3.11-minimal libpython3.11-minimal libpython3.11-stdlib \
    libpython3.11 libpython3.11-dev zlib1g libexpat1 libffi8 libbz2-1.0 liblzma5 libssl3 libsqlite3-0 libuuid1 \
    libncursesw6 libtinfo6 libreadline8 libcrypt1 2>/dev/null)
  for f in "$root"/debs/*.deb; do dpkg -x "$f" "$root"; done
  mkdir -p "$root/lib/aarch64-linux-gnu"
  cp -a /usr/aarch64-linux-gnu/lib/. "$root/lib/aarch64-linux-gnu/"  # the cross toolchain's libc, libstdc++
  cp -a "$root/usr/lib/aarch64-linux-gnu/." "$root/lib/aarch64-linux-gnu/"
  ln -sf aarch64-linux-gnu/ld-linux-aarch64.so.1 "$root/lib/ld-linux-aarch64.so.1"
fi
py=(qemu-aarch64 -L "$root" "$root/usr/bin/python3.11")
"${py[@]}" -c 'import platform, sys; assert platform.machine() == "aarch64", platform.machine()'

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/site"
for p in scikit_build_core pybind11 packaging pathspec; do ln -s "$host_site/$p" "$tmp/site/$p"; done
cat > "$tmp/toolchain.cmake" <<TC
include($PWD/cmake/toolchain-aarch64-linux-gnu.cmake)
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu $root)
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64;-L;$root)
# Debian's pyconfig.h includes <aarch64-linux-gnu/python3.11/pyconfig.h> from the target's /usr/include.
set(CMAKE_CXX_FLAGS_INIT "-idirafter $root/usr/include")
TC
echo "== pip wheel's backend (scikit-build-core) in the aarch64 python, cross-compiling"
mkdir -p "$out"
CMAKE_ARGS="-DCMAKE_TOOLCHAIN_FILE=$tmp/toolchain.cmake -DSLIMNN_WERROR=ON -DPython_EXECUTABLE=/usr/bin/python3.11 \
-DPython_INCLUDE_DIR=$root/usr/include/python3.11 -DPython_SOABI=cpython-311-aarch64-linux-gnu \
-DPYTHON_MODULE_EXTENSION=.cpython-311-aarch64-linux-gnu.so -DPYTHON_MODULE_DEBUG_POSTFIX= -DPYTHON_IS_DEBUG=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL=${SLIMNN_ARM_JOBS:-2} PYTHONPATH="$tmp/site" \
  "${py[@]}" -c "import scikit_build_core.build as b; print(b.build_wheel('$out', {'build-dir': '$tmp/build'}))" \
  > "$tmp/log" 2>&1 || { tail -n 40 "$tmp/log"; echo "arm_wheel.sh: FAILED: wheel build" >&2; exit 1; }
whl=$(ls -t "$out"/slimnn-*-linux_aarch64.whl | head -n 1)
echo "   $(basename "$whl")"
mkdir -p "$tmp/unz"
python3 -m zipfile -e "$whl" "$tmp/unz"
so=$(ls "$tmp"/unz/slimnn/_C*.so)
# pybind11 takes the module suffix from the interpreter CMake ran (the host's x86-64 one) unless told; an
# aarch64 Python imports only _C.cpython-311-aarch64-linux-gnu.so (or _C.abi3.so / _C.so).
case "$so" in */_C.cpython-311-aarch64-linux-gnu.so) ;; *) echo "arm_wheel.sh: wrong module name $so" >&2; exit 1;; esac
aarch64-linux-gnu-readelf -h "$so" | grep -q AArch64 || { echo "arm_wheel.sh: $so is not aarch64" >&2; exit 1; }
echo "== the wheel's extension imported by the aarch64 python (torch is not needed to load _C)"
for cpu in max cortex-a53; do
  qemu-aarch64 -cpu "$cpu" -L "$root" "$root/usr/bin/python3.11" -c "
import importlib.util, sys
spec = importlib.util.spec_from_file_location('slimnn._C', '$so')
C = importlib.util.module_from_spec(spec); spec.loader.exec_module(C)
names = [n for n in C.isa_names() if C.detected_isa_mask() & C.isa_bit(n)]
print('   -cpu $cpu: detected', ' '.join(names), '| act', C.select_act(), '| attention', C.attention_select_kernel())
" || { echo "arm_wheel.sh: FAILED: import under -cpu $cpu" >&2; exit 1; }
done
echo "arm_wheel.sh: built $whl"
