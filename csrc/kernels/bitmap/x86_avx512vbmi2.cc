// AVX-512 VBMI2 + VNNI bitmap kernels.
//  m1 (GEMV): per row and 64-column chunk, vpcompressb packs the chunk's u8 activations at the mask's
//    positions into the low lanes (zeros above), a 64-byte load takes the row's next values (the zeros
//    cancel what lies past popcount), one vpdpbusd. Four chunks per step with four accumulators; the value
//    pointer advances by popcount and is clamped to the values section once per step (the 256-byte pad
//    covers the step's loads).
//  m8 (batched): per row and chunk, vpexpandb puts the row's values back at their dense positions once,
//    then one vpdpbusd per activation row.
// Measured on Zen 4 (2 cores, shared): vpcompressb/vpexpandb zmm cost about 2 cycles each, so the GEMV
// runs near one chunk per 2-4 cycles whatever the density; see docs/sparse.md.
#include <immintrin.h>

#include <algorithm>

#include "kernels/bitmap/bitmap.h"

namespace slimnn {
namespace {

// Horizontal sum (wrapping, like the portable kernel's uint32 sum); gcc 12's _mm512_reduce_add_epi32
// trips -Wuninitialized inside its own header.
inline int32_t hsum(__m512i v) {
  alignas(64) uint32_t t[16];
  _mm512_store_si512(t, v);
  uint32_t s = 0;
  for (int i = 0; i < 16; ++i) s += t[i];
  return int32_t(s);
}

inline const int8_t* clamp_ptr(const int8_t* p, const int8_t* end) { return p < end ? p : end; }

template <int MR>
void rows_batched(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t ldx, int32_t* dots,
                  int64_t ldd) {
  const int64_t kc = w.kc;
  const int8_t* vend = w.values + w.nnz;
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t* mk = w.masks + r * kc;
    const int8_t* p = w.values + std::min<int64_t>(w.ptr[r], w.nnz);
    __m512i acc[MR];
    for (int t = 0; t < MR; ++t) acc[t] = _mm512_setzero_si512();
    for (int64_t c = 0; c < kc; ++c) {
      const uint64_t m = mk[c];
      p = clamp_ptr(p, vend);
      const __m512i wv = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(m), p);
      p += _mm_popcnt_u64(m);
      for (int t = 0; t < MR; ++t)
        acc[t] = _mm512_dpbusd_epi32(acc[t], _mm512_loadu_si512(xq + t * ldx + c * kBitmapChunk), wv);
    }
    for (int t = 0; t < MR; ++t) dots[t * ldd + r] = hsum(acc[t]);
  }
}

}  // namespace

void spmm_bitmap_i8_u8_m1__avx512vbmi2(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t,
                                       int mrows, int32_t* dots, int64_t) {
  if (mrows <= 0) return;
  const int64_t kc = w.kc;
  const int8_t* vend = w.values + w.nnz;
  for (int64_t r = r0; r < r1; ++r) {
    const uint64_t* mk = w.masks + r * kc;
    const int8_t* p = w.values + std::min<int64_t>(w.ptr[r], w.nnz);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 <= kc; c += 4) {
      p = clamp_ptr(p, vend);
      const uint64_t m0 = mk[c], m1 = mk[c + 1], m2 = mk[c + 2], m3 = mk[c + 3];
      const uint8_t* x = xq + c * kBitmapChunk;
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(x));
      const __m512i x1 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m1), _mm512_loadu_si512(x + 64));
      const __m512i x2 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m2), _mm512_loadu_si512(x + 128));
      const __m512i x3 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m3), _mm512_loadu_si512(x + 192));
      const int8_t* p1 = p + _mm_popcnt_u64(m0);
      const int8_t* p2 = p1 + _mm_popcnt_u64(m1);
      const int8_t* p3 = p2 + _mm_popcnt_u64(m2);
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      a1 = _mm512_dpbusd_epi32(a1, x1, _mm512_loadu_si512(p1));
      a2 = _mm512_dpbusd_epi32(a2, x2, _mm512_loadu_si512(p2));
      a3 = _mm512_dpbusd_epi32(a3, x3, _mm512_loadu_si512(p3));
      p = p3 + _mm_popcnt_u64(m3);
    }
    for (; c < kc; ++c) {
      p = clamp_ptr(p, vend);
      const uint64_t m0 = mk[c];
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(xq + c * kBitmapChunk));
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      p += _mm_popcnt_u64(m0);
    }
    dots[r] = hsum(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  }
}

void spmm_bitmap_i8_u8_m8__avx512vbmi2(const BitmapView& w, int64_t r0, int64_t r1, const uint8_t* xq, int64_t ldx,
                                       int mrows, int32_t* dots, int64_t ldd) {
  switch (mrows) {
    case 1: rows_batched<1>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 2: rows_batched<2>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 3: rows_batched<3>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 4: rows_batched<4>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 5: rows_batched<5>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 6: rows_batched<6>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 7: rows_batched<7>(w, r0, r1, xq, ldx, dots, ldd); break;
    case 8: rows_batched<8>(w, r0, r1, xq, ldx, dots, ldd); break;
    default: break;
  }
}

}  // namespace slimnn
