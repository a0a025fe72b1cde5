// Portable reference kernels: a plain loop over the set bits of each mask. The sums are exact int32
// (wrapping, like vpdpbusd), so every ISA kernel must match them bit for bit.
#include <algorithm>

#include "kernels/bitmap/bitmap.h"

namespace slimnn {

namespace {
// G = 8 (the permute layout): per group, window and row, the entry's pieces of offsets then values.
void dots_perm_portable(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int mrows,
                        int32_t* dots, int64_t ldd) {
  const int64_t vmax = w.stored + kBitmapValuePad;  // reads stay inside the values and their pad
  constexpr int G = kBitmapPermRows;
  for (int64_t gi = g0; gi < g1; ++gi) {
    const uint16_t* cnt = w.counts + gi * w.nw * G;
    for (int t = 0; t < mrows; ++t) {
      const uint8_t* x = xq + t * ldx;
      uint32_t acc[G] = {};
      int64_t j = std::min<int64_t>(w.ptr[gi], w.stored);
      for (int64_t wi = 0; wi < w.nw; ++wi)
        for (int jr = 0; jr < G; ++jr)
          for (int64_t c = cnt[wi * G + jr]; c > 0;) {
            const int64_t pc = std::min<int64_t>(64, c);
            for (int64_t i = 0; i < pc; ++i) {
              const uint8_t off = j + i < vmax ? uint8_t(w.values[j + i]) : 0;
              const int8_t v = j + pc + i < vmax ? w.values[j + pc + i] : 0;
              acc[jr] += uint32_t(int32_t(x[wi * kBitmapWindow + off]) * int32_t(v));
            }
            j += 2 * pc, c -= pc;
          }
      for (int jr = 0; jr < G; ++jr)
        if (gi * G + jr < w.n) dots[t * ldd + gi * G + jr] = int32_t(acc[jr]);
    }
  }
}

void dots_portable(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int mrows,
                   int32_t* dots, int64_t ldd) {
  if (w.group_rows == kBitmapPermRows) return dots_perm_portable(w, g0, g1, xq, ldx, mrows, dots, ldd);
  const int64_t vmax = w.stored + kBitmapValuePad;  // reads stay inside the values and their pad
  const int G = w.group_rows;
  for (int64_t gi = g0; gi < g1; ++gi) {
    const uint64_t* mk = w.masks + gi * w.kc;
    for (int t = 0; t < mrows; ++t) {
      const uint8_t* x = xq + t * ldx;
      uint32_t acc[2] = {0, 0};
      int64_t j = std::min<int64_t>(w.ptr[gi], w.stored);
      for (int64_t c = 0; c < w.kc; ++c) {
        const uint64_t m = mk[c];
        for (int jr = 0; jr < G; ++jr) {
          for (uint64_t mm = m; mm; mm &= mm - 1, ++j) {
            const int8_t v = j < vmax ? w.values[j] : 0;
            acc[jr] += uint32_t(int32_t(x[c * kBitmapChunk + __builtin_ctzll(mm)]) * int32_t(v));
          }
        }
      }
      for (int jr = 0; jr < G; ++jr)
        if (gi * G + jr < w.n) dots[t * ldd + gi * G + jr] = int32_t(acc[jr]);
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
