// libFuzzer target for the q8 packed-weight parser (formats/header.cc) and everything that trusts it.
//
// Each input is taken as a blob. The header check alone must make every later read in bounds, so an accepted
// blob is unpacked and multiplied (both kernel kinds, GEMV and GEMM row counts, the portable kernels and the
// best this CPU has); the full check must admit only canonical blobs, so an accepted one is packed again and
// compared byte for byte. Anything but a FormatError escaping, an out-of-bounds access (ASan), undefined
// behaviour (UBSan) or a failed invariant (abort) is a finding. Build and run: scripts/fuzz.sh.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "common/isa.h"
#include "formats/q8.h"
#include "kernels/qgemm/qgemm.h"

namespace {

using namespace slimnn;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz_q8 invariant failed: %s\n", what);
    std::abort();
  }
}

void exercise(const Q8View& v, const uint8_t* blob, size_t size, bool full_check) {
  // Unpack: sizes come from the validated header, bounded by the blob's own size.
  std::vector<int8_t> q(static_cast<size_t>(v.n * v.k));
  std::vector<float> scales(static_cast<size_t>(v.n_groups * v.n));
  q8_unpack(v, q.data(), scales.data());
  if (full_check) {
    const int64_t gs = (v.n_groups == 1 && v.group_size == v.kp) ? 0 : v.group_size;
    check(q8_blob_bytes(v.n, v.k, gs) == size, "repacked size differs");
    std::unique_ptr<uint8_t[]> again(new uint8_t[size]);
    q8_pack(q.data(), scales.data(), v.n, v.k, gs, again.get());
    check(std::memcmp(again.get(), blob, size) == 0, "an accepted blob is not canonical");
  }
  const uint32_t masks[2] = {kIsaPortable, current_isa_mask()};
  for (uint32_t mask : masks) {
    for (int64_t m : {int64_t{1}, int64_t{5}}) {
      std::vector<float> x(static_cast<size_t>(m * v.k));
      for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(static_cast<int>(i % 7) - 3) * 0.25f;
      std::vector<float> y(static_cast<size_t>(m * v.n));
      for (KernelKind kind : {KernelKind::kQ8Dyn, KernelKind::kQ8Wo})
        q8_linear(kind, x.data(), false, m, v.k, v, nullptr, y.data(), v.n, 1, mask);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exactly sized heap copy: ASan flags a read one byte past the end, and new[] gives the alignment of
  // a torch allocation's first bytes (16), which q8_view requires to be at least 4.
  std::unique_ptr<uint8_t[]> blob(new uint8_t[size == 0 ? 1 : size]);
  if (size != 0) std::memcpy(blob.get(), data, size);
  for (bool full_check : {false, true}) {
    try {
      const Q8View v = q8_view(size == 0 ? nullptr : blob.get(), size, full_check);
      exercise(v, blob.get(), size, full_check);
    } catch (const FormatError&) {
      // a clean rejection: what malformed input must get
    }
  }
  return 0;
}
