// AVX-512 VBMI2 + VNNI bitmap kernels.
//  m1 (GEMV): per group and 64-column chunk, vpcompressb packs the chunk's u8 activations at the mask's
//    positions into the low lanes (zeros above), a 64-byte load takes each row's next values (the zeros
//    cancel what lies past popcount), one vpdpbusd per row. G = 1: four chunks per step with four
//    accumulators; G = 2: two chunks per step, one compress for both rows. The value pointer advances by
//    popcount and is clamped to the values section once per step (the 256-byte pad covers the step's
//    loads).
//  m8 (batched): per row and chunk, vpexpandb puts the row's values back at their dense positions once,
//    then one vpdpbusd per activation row; two rows share each activation load. Always computes 8
//    activation rows (the driver pads the tile with readable rows), stores `mrows`.
//  G = 8 (the permute layout, formats/bitmap.h): no compress; per row and window piece, two vpermi2b gather
//    the activations at the stored offsets from the window's four registers (gather_window).
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

// Two value streams (rows ra and rb) against 8 activation rows: each activation chunk load serves both
// (2 expands, 8 loads, 16 vpdpbusd per chunk). G = 1: two groups (rb = ra + 1, or rb = ra for a last odd
// one); G = 2: the two rows of one group, whose runs share the group's masks. Accumulators are named
// variables: gcc 12 keeps an array of 16 zmm accumulators in memory.
void pair8(const BitmapView& w, int64_t ga, int64_t gb, const uint8_t* xq, int64_t ldx, int mrows, int32_t* dots,
           int64_t ldd) {
  const int64_t kc = w.kc;
  const bool pair = w.group_rows == 2;
  const int8_t* vend = w.values + w.stored;
  const uint64_t* ma = w.masks + ga * kc;
  const uint64_t* mb = w.masks + gb * kc;
  const int8_t* pa = w.values + std::min<int64_t>(w.ptr[ga], w.stored);
  const int8_t* pb = w.values + std::min<int64_t>(w.ptr[gb], w.stored);
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  __m512i b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
  const uint8_t* x = xq;
  for (int64_t c = 0; c < kc; ++c, x += kBitmapChunk) {
    const uint64_t mka = ma[c], mkb = mb[c];
    pa = clamp_ptr(pa, vend);
    __m512i wa, wb;
    if (pair) {  // the group's two runs, one after the other
      const int64_t pc = _mm_popcnt_u64(mka);
      wa = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mka), pa);
      wb = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mka), pa + pc);
      pa += 2 * pc;
    } else {
      pb = clamp_ptr(pb, vend);
      wa = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mka), pa);
      wb = _mm512_maskz_expandloadu_epi8(_cvtu64_mask64(mkb), pb);
      pa += _mm_popcnt_u64(mka);
      pb += _mm_popcnt_u64(mkb);
    }
    __m512i xv;
#define SLIMNN_BITMAP_STEP(t)               \
  xv = _mm512_loadu_si512(x + t * ldx);     \
  a##t = _mm512_dpbusd_epi32(a##t, xv, wa); \
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
  const int64_t ra = pair ? 2 * ga : ga, rb = pair ? 2 * ga + 1 : gb;
  const __m512i av[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
  const __m512i bv[8] = {b0, b1, b2, b3, b4, b5, b6, b7};
  for (int t = 0; t < mrows; ++t) {
    dots[t * ldd + ra] = hsum(av[t]);
    if (rb < w.n) dots[t * ldd + rb] = hsum(bv[t]);
  }
}

// GEMV, G = 1: four chunks per step, four accumulators.
void gemv_g1(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int32_t* dots) {
  const int64_t kc = w.kc;
  const int8_t* vend = w.values + w.stored;
  for (int64_t r = g0; r < g1; ++r) {
    const uint64_t* mk = w.masks + r * kc;
    const int8_t* p = w.values + std::min<int64_t>(w.ptr[r], w.stored);
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

// GEMV, G = 2: one compress per chunk serves both rows of the group; two chunks per step (the step reads
// at most 4 x 64 bytes past its clamped pointer: the pad).
void gemv_g2(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int32_t* dots) {
  const int64_t kc = w.kc;
  const int8_t* vend = w.values + w.stored;
  for (int64_t g = g0; g < g1; ++g) {
    const uint64_t* mk = w.masks + g * kc;
    const int8_t* p = w.values + std::min<int64_t>(w.ptr[g], w.stored);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, b0 = a0, b1 = a0;
    int64_t c = 0;
    for (; c + 2 <= kc; c += 2) {
      p = clamp_ptr(p, vend);
      const uint64_t m0 = mk[c], m1 = mk[c + 1];
      const int64_t c0 = _mm_popcnt_u64(m0), c1 = _mm_popcnt_u64(m1);
      const uint8_t* x = xq + c * kBitmapChunk;
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(x));
      const __m512i x1 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m1), _mm512_loadu_si512(x + 64));
      const int8_t* q = p + 2 * c0;
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      b0 = _mm512_dpbusd_epi32(b0, x0, _mm512_loadu_si512(p + c0));
      a1 = _mm512_dpbusd_epi32(a1, x1, _mm512_loadu_si512(q));
      b1 = _mm512_dpbusd_epi32(b1, x1, _mm512_loadu_si512(q + c1));
      p = q + 2 * c1;
    }
    if (c < kc) {
      p = clamp_ptr(p, vend);
      const uint64_t m0 = mk[c];
      const int64_t c0 = _mm_popcnt_u64(m0);
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(xq + c * kBitmapChunk));
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      b0 = _mm512_dpbusd_epi32(b0, x0, _mm512_loadu_si512(p + c0));
    }
    dots[2 * g] = hsum(_mm512_add_epi32(a0, a1));
    if (2 * g + 1 < w.n) dots[2 * g + 1] = hsum(_mm512_add_epi32(b0, b1));
  }
}

// G = 8 (the permute layout): the activations of one piece (at most 64 nonzeros of a 256-column window
// x0..x3) at the piece's offsets, in the low lanes, zeros above `cnt`.
inline __m512i gather_window(__m512i x0, __m512i x1, __m512i x2, __m512i x3, __m512i idx, __mmask64 live) {
  const __mmask64 hi = _mm512_movepi8_mask(idx);  // offset bit 7: the upper 128 columns
  const __m512i lo = _mm512_maskz_permutex2var_epi8(_kandn_mask64(hi, live), x0, idx, x1);
  return _mm512_or_si512(lo, _mm512_maskz_permutex2var_epi8(_kand_mask64(hi, live), x2, idx, x3));
}

// GEMV, G = 8: per group and window, the window's 256 activations in four registers serve the 8 rows; per
// row and piece one offset load, two vpermi2b, one value load, one vpdpbusd. The stream pointer is clamped
// to the values section before each piece (a piece reads at most 128 bytes: within the pad).
void gemv_perm8(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int32_t* dots) {
  constexpr int G = kBitmapPermRows;
  const int8_t* vend = w.values + w.stored;
  for (int64_t g = g0; g < g1; ++g) {
    const uint16_t* cnt = w.counts + g * w.nw * G;
    const int8_t* p = w.values + std::min<int64_t>(w.ptr[g], w.stored);
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t wi = 0; wi < w.nw; ++wi, cnt += G) {
      const uint8_t* x = xq + wi * kBitmapWindow;
      const __m512i x0 = _mm512_loadu_si512(x), x1 = _mm512_loadu_si512(x + 64);
      const __m512i x2 = _mm512_loadu_si512(x + 128), x3 = _mm512_loadu_si512(x + 192);
#define SLIMNN_PERM_ROW(jr)                                                                              \
  for (unsigned c = cnt[jr];;) {                                                                         \
    const unsigned pc = c < 64 ? c : 64;                                                                 \
    p = clamp_ptr(p, vend);                                                                              \
    const __m512i xs = gather_window(x0, x1, x2, x3, _mm512_loadu_si512(p), _cvtu64_mask64(_bzhi_u64(~0ull, pc))); \
    a##jr = _mm512_dpbusd_epi32(a##jr, xs, _mm512_loadu_si512(p + pc));                                 \
    p += 2 * pc;                                                                                         \
    if (__builtin_expect(c <= 64, 1)) break;                                                             \
    c -= 64;                                                                                             \
  }
      SLIMNN_PERM_ROW(0)
      SLIMNN_PERM_ROW(1)
      SLIMNN_PERM_ROW(2)
      SLIMNN_PERM_ROW(3)
      SLIMNN_PERM_ROW(4)
      SLIMNN_PERM_ROW(5)
      SLIMNN_PERM_ROW(6)
      SLIMNN_PERM_ROW(7)
#undef SLIMNN_PERM_ROW
    }
    const __m512i av[G] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int jr = 0; jr < G && g * G + jr < w.n; ++jr) dots[g * G + jr] = hsum(av[jr]);
  }
}

// Batched, G = 8: per row of a group, its entries (found by skipping the other rows' counts of each window)
// against 8 activation rows, each piece's offsets and mask shared by the 8 gathers.
void perm8_rows8(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx, int mrows,
                 int32_t* dots, int64_t ldd) {
  constexpr int G = kBitmapPermRows, MT = 8;
  const int8_t* vend = w.values + w.stored;
  for (int64_t g = g0; g < g1; ++g) {
    for (int jr = 0; jr < G && g * G + jr < w.n; ++jr) {
      const uint16_t* cnt = w.counts + g * w.nw * G;
      int64_t j = std::min<int64_t>(w.ptr[g], w.stored);
      __m512i acc[MT];
      for (int t = 0; t < MT; ++t) acc[t] = _mm512_setzero_si512();
      for (int64_t wi = 0; wi < w.nw; ++wi, cnt += G) {
        int64_t before = 0, all = 0;
        for (int i = 0; i < G; ++i) {
          before += i < jr ? cnt[i] : 0;
          all += cnt[i];
        }
        const int8_t* p = w.values + std::min<int64_t>(j + 2 * before, w.stored);
        j = std::min<int64_t>(j + 2 * all, w.stored);
        for (unsigned c = cnt[jr]; c > 0;) {
          const unsigned pc = c < 64 ? c : 64;
          p = clamp_ptr(p, vend);
          const __m512i idx = _mm512_loadu_si512(p), val = _mm512_loadu_si512(p + pc);
          const __mmask64 live = _cvtu64_mask64(_bzhi_u64(~0ull, pc));
          for (int t = 0; t < MT; ++t) {
            const uint8_t* x = xq + t * ldx + wi * kBitmapWindow;
            const __m512i xs = gather_window(_mm512_loadu_si512(x), _mm512_loadu_si512(x + 64),
                                             _mm512_loadu_si512(x + 128), _mm512_loadu_si512(x + 192), idx, live);
            acc[t] = _mm512_dpbusd_epi32(acc[t], xs, val);
          }
          p += 2 * pc, c -= pc;
        }
      }
      for (int t = 0; t < mrows; ++t) dots[t * ldd + g * G + jr] = hsum(acc[t]);
    }
  }
}

}  // namespace

void spmm_bitmap_i8_u8_m1__avx512vbmi2(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t,
                                       int mrows, int32_t* dots, int64_t) {
  if (mrows <= 0) return;
  if (w.group_rows == kBitmapPermRows)
    gemv_perm8(w, g0, g1, xq, dots);
  else if (w.group_rows == 2)
    gemv_g2(w, g0, g1, xq, dots);
  else
    gemv_g1(w, g0, g1, xq, dots);
}

void spmm_bitmap_i8_u8_m8__avx512vbmi2(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx,
                                       int mrows, int32_t* dots, int64_t ldd) {
  if (mrows <= 0) return;
  if (w.group_rows == kBitmapPermRows) return perm8_rows8(w, g0, g1, xq, ldx, mrows, dots, ldd);
  if (w.group_rows == 2) {
    for (int64_t g = g0; g < g1; ++g) pair8(w, g, g, xq, ldx, mrows, dots, ldd);
    return;
  }
  int64_t g = g0;
  for (; g + 2 <= g1; g += 2) pair8(w, g, g + 1, xq, ldx, mrows, dots, ldd);
  if (g < g1) pair8(w, g, g, xq, ldx, mrows, dots, ldd);
}

}  // namespace slimnn
