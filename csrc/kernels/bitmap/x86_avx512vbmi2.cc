// AVX-512 VBMI2 + VNNI bitmap kernels.
//  m1 (GEMV): per row and 64-column chunk, vpcompressb packs the chunk's u8 activations at the mask's
//    positions into the low lanes (zeros above), a 64-byte load takes the row's next values (the zeros
//    cancel what lies past popcount), one vpdpbusd. Four chunks per step with four accumulators; the value
//    pointer advances by popcount and is clamped to the values section once per step (the 256-byte pad
//    covers the step's loads).
//  m8 (batched): per row and chunk, vpexpandb puts the row's values back at their dense positions once,
//    then one vpdpbusd per activation row; two rows share each activation load. Always computes 8
//    activation rows (the driver pads the tile with readable rows), stores `mrows`.
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

// Rows ra and rb (equal for a last odd row) against 8 activation rows: each activation chunk load serves
// both rows (2 expands, 8 loads, 16 vpdpbusd per chunk). Accumulators are named variables: gcc 12 keeps
// an array of 16 zmm accumulators in memory.
void rows2x8(const BitmapView& w, int64_t ra, int64_t rb, const uint8_t* xq, int64_t ldx, int mrows,
             int32_t* dots, int64_t ldd) {
  const int64_t kc = w.kc;
  const int8_t* vend = w.values + w.nnz;
  const uint64_t* ma = w.masks + ra * kc;
  const uint64_t* mb = w.masks + rb * kc;
  const int8_t* pa = w.values + std::min<int64_t>(w.ptr[ra], w.nnz);
  const int8_t* pb = w.values + std::min<int64_t>(w.ptr[rb], w.nnz);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  __m512i b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
  const uint8_t* x = xq;
  for (int64_t c = 0; c < kc; ++c, x += kBitmapChunk) {
    const uint64_t mka = ma[c], mkb = mb[c];
    pa = clamp_ptr(pa, vend);
    pb = clamp_ptr(pb, vend);
    const __m512i wa = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mka), pa);
    const __m512i wb = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mkb), pb);
    pa += _mm_popcnt_u64(mka);
    pb += _mm_popcnt_u64(mkb);
    __m512i xv;
#define SLIMNN_BITMAP_STEP(t)                         \
  xv = _mm512_loadu_si512(x + t * ldx);               \
  a##t = _mm512_dpbusd_epi32(a##t, xv, wa);           \
  b##t = _mm512_dpbusd_epi32(b##t, xv, wb);
    SLIMNN_BITMAP_STEP(0)
    SLIMNN_BITMAP_STEP(1)
    SLIMNN_BITMAP_STEP(2)
    SLIMNN_BITMAP_STEP(3)
    SLIMNN_BITMAP_STEP(4)
    SLIMNN_BITMAP_STEP(5)
    SLIMNN_BITMAP_STEP(6)
    SLIMNN_BITMAP_STEP(7)
#undef SLIMNN_BITMAP_STEP
  }
  const __m512i av[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
  const __m512i bv[8] = {b0, b1, b2, b3, b4, b5, b6, b7};
  for (int t = 0; t < mrows; ++t) {
    dots[t * ldd + ra] = hsum(av[t]);
    dots[t * ldd + rb] = hsum(bv[t]);
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
  if (mrows <= 0) return;
  int64_t r = r0;
  for (; r + 2 <= r1; r += 2) rows2x8(w, r, r + 1, xq, ldx, mrows, dots, ldd);
  if (r < r1) rows2x8(w, r, r, xq, ldx, mrows, dots, ldd);
}

}  // namespace slimnn
