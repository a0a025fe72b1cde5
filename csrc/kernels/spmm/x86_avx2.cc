// AVX2 + FMA spmm kernels (8-wide).
//  - GEMV (M = 1): csr with scalar cursors and 2:4/4:8 with rank tables (x86_gemv.h); bsr with broadcast x
//    for 16x1 and 4x1 blocks and contiguous x for 1x4 and 1x8 blocks; other N:M by compressing x to the
//    mask's positions (vpermps with the rank table per 8 columns) and multiplying with the stored values.
//  - batched (MT = 8 activation rows in one ymm): x86_batched.h on 8 lanes.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "common/simd/x86_avx2.h"
#include "kernels/spmm/x86_gemv.h"

constexpr int kBsrRowsPerPass = 8;  // 16 accumulators would leave no registers for the operands
constexpr int kNmRowBlock = 2;      // four rows run out of general registers for the masks and value pointers
#include "kernels/spmm/x86_batched.h"

// Stores the first `count` (1..8) lanes.
inline void store_first(float* y, __m256 v, int64_t count) {
  if (count >= 8) {
    _mm256_storeu_ps(y, v);
    return;
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int64_t i = 0; i < count; ++i) y[i] = t[i];
}

// ---------------------------------------------------------------- bsr, GEMV

template <typename V>
inline void load16_halves(const V* p, __m256* lo, __m256* hi);
template <>
inline void load16_halves<float>(const float* p, __m256* lo, __m256* hi) {
  *lo = _mm256_loadu_ps(p);
  *hi = _mm256_loadu_ps(p + 8);
}
template <>
inline void load16_halves<int8_t>(const int8_t* p, __m256* lo, __m256* hi) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b)));
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<16, 1>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m256 lo, hi;
    for (; i + 2 <= e; i += 2) {
      const __m256 x0 = _mm256_set1_ps(x[blk.col(i)]);
      const __m256 x1 = _mm256_set1_ps(x[blk.col(i + 1)]);
      load16_halves<V>(blk.vals + i * 16, &lo, &hi);
      a0 = _mm256_fmadd_ps(lo, x0, a0);
      a1 = _mm256_fmadd_ps(hi, x0, a1);
      load16_halves<V>(blk.vals + (i + 1) * 16, &lo, &hi);
      a2 = _mm256_fmadd_ps(lo, x1, a2);
      a3 = _mm256_fmadd_ps(hi, x1, a3);
    }
    if (i < e) {
      const __m256 x0 = _mm256_set1_ps(x[blk.col(i)]);
      load16_halves<V>(blk.vals + i * 16, &lo, &hi);
      a0 = _mm256_fmadd_ps(lo, x0, a0);
      a1 = _mm256_fmadd_ps(hi, x0, a1);
    }
    a0 = _mm256_add_ps(a0, a2);
    a1 = _mm256_add_ps(a1, a3);
    if (w.scales) {
      a0 = _mm256_mul_ps(a0, _mm256_loadu_ps(w.scales + b * 16));
      a1 = _mm256_mul_ps(a1, _mm256_loadu_ps(w.scales + b * 16 + 8));
    }
    const int64_t rows = w.n - b * 16;
    store_first(y + b * 16, a0, rows);
    if (rows > 8) store_first(y + b * 16 + 8, a1, rows - 8);
  });
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<4, 1>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    __m128 t = _mm_setzero_ps();
    for (; i + 4 <= e; i += 4) {
      const __m256 x0 = _mm256_set_m128(_mm_set1_ps(x[blk.col(i + 1)]), _mm_set1_ps(x[blk.col(i)]));
      const __m256 x1 = _mm256_set_m128(_mm_set1_ps(x[blk.col(i + 3)]), _mm_set1_ps(x[blk.col(i + 2)]));
      a0 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 4), x0, a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 4 + 8), x1, a1);
    }
    for (; i < e; ++i) t = _mm_fmadd_ps(load4<V>(blk.vals + i * 4), _mm_set1_ps(x[blk.col(i)]), t);
    const __m256 a = _mm256_add_ps(a0, a1);
    __m128 r = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)), t);
    if (w.scales) r = _mm_mul_ps(r, _mm_loadu_ps(w.scales + b * 4));
    alignas(16) float o[4];
    _mm_store_ps(o, r);
    for (int a2 = 0; a2 < 4; ++a2)
      if (b * 4 + a2 < w.n) y[b * 4 + a2] = o[a2];
  });
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<1, 4>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; i + 4 <= e; i += 4) {
      const __m256 x0 = _mm256_loadu2_m128(x + blk.col(i + 1) * 4, x + blk.col(i) * 4);
      const __m256 x1 = _mm256_loadu2_m128(x + blk.col(i + 3) * 4, x + blk.col(i + 2) * 4);
      a0 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 4), x0, a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 4 + 8), x1, a1);
    }
    const __m128 t = bsr1x4_rest(blk, i, e, x);
    const float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_castps128_ps256(t)));
    if (b < w.n) y[b] = r * row_scale(w, b);
  });
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<1, 8>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (; i + 2 <= e; i += 2) {
      a0 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 8), _mm256_loadu_ps(x + blk.col(i) * 8), a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 8 + 8), _mm256_loadu_ps(x + blk.col(i + 1) * 8), a1);
    }
    if (i < e) a0 = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 8), _mm256_loadu_ps(x + blk.col(i) * 8), a0);
    if (b < w.n) y[b] = hsum(_mm256_add_ps(a0, a1)) * row_scale(w, b);
  });
}

// ---------------------------------------------------------------- nm

// Other N:M: the row's values are copied (or widened) into a buffer with slack, so full 8-lane loads stay
// in bounds; lanes past each half's count are zeroed with a lane mask.
template <typename V>
void nm_other_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const int64_t kc = w.kc, vpc = w.vpc;
  const int64_t kChunks = (kBuf - 16) / vpc;
  alignas(32) float buf[kBuf];
  const V* src = static_cast<const V*>(w.values);
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t cc = 0; cc < kc; cc += kChunks) {
      const int64_t ce = kc - cc < kChunks ? kc : cc + kChunks;
      const V* s0 = src + (row * kc + cc) * vpc;
      const int64_t count = (ce - cc) * vpc;
      for (int64_t i = 0; i < count; ++i) buf[i] = static_cast<float>(s0[i]);
      const float* vf = buf;
      for (int64_t ch = cc; ch < ce; ++ch, vf += vpc) {
        const uint32_t m = w.masks[row * kc + ch];
        const int lo = __builtin_popcount(m & 0xFF) < vpc ? __builtin_popcount(m & 0xFF) : static_cast<int>(vpc);
        const __m256i r0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kRank.v[m & 0xFF])));
        const __m256i r1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kRank.v[m >> 8])));
        const __m256 x0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + ch * kNmChunk), r0);
        const __m256 x1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + ch * kNmChunk + 8), r1);
        a0 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(vf), mask_n(lo)), x0, a0);
        a1 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(vf + lo), mask_n(static_cast<int>(vpc) - lo)), x1, a1);
      }
    }
    y[row] = hsum(_mm256_add_ps(a0, a1)) * row_scale(w, row);
  }
}

}  // namespace
}  // namespace avx2

#define SLIMNN_SPMM_ISA avx2
#define SLIMNN_SPMM_IF_avx2(kind, name, gemv) SLIMNN_SPMM_DEFINE(kind, name, gemv)
#include "kernels/spmm/x86_entries.h"
#undef SLIMNN_SPMM_ISA

}  // namespace slimnn
