// Portable reference kernels: a plain loop over the set bits of each mask. The sums are exact int32
// (wrapping, like vpdpbusd), so every ISA kernel must match them bit for bit.
#include <algorithm>

#include "kernels/bitmap/bitmap.h"

namespace slimnn {

namespace {
void dots_portable(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t ldx, int mrows,
                   int32_t* dots, int64_t ldd) {
  const int64_t vmax = w.nnz + kBitmapValuePad;  // the same clamp as the SIMD kernels
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t* mk = w.masks + r * w.kc;
    for (int t = 0; t < mrows; ++t) {
      const uint8_t* x = xq + t * ldx;
      int64_t j = std::min<int64_t>(w.ptr[r], w.nnz);
      uint32_t acc = 0;
      for (int64_t c = 0; c < w.kc; ++c) {
        uint64_t m = mk[c];
        while (m) {
          const int b = __builtin_ctzll(m);
          m &= m - 1;
          const int8_t v = j < vmax ? w.values[j] : 0;
          acc += uint32_t(int32_t(x[c * kBitmapChunk + b]) * int32_t(v));
          ++j;
        }
      }
      dots[t * ldd + r] = int32_t(acc);
    }
  }
}
}  // namespace

void spmm_bitmap_i8_u8_m1__portable(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t ldx,
                                    int mrows, int32_t* dots, int64_t ldd) {
  dots_portable(w, r0, r1, xq, ldx, mrows, dots, ldd);
}

void spmm_bitmap_i8_u8_m8__portable(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t ldx,
                                    int mrows, int32_t* dots, int64_t ldd) {
  dots_portable(w, r0, r1, xq, ldx, mrows, dots, ldd);
}

}  // namespace slimnn
