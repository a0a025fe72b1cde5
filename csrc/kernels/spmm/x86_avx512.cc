// AVX-512 F/BW/VL/DQ spmm kernels.
//  - GEMV (M = 1): csr with scalar cursors and 2:4/4:8 with rank tables (x86_gemv.h, shared with AVX2);
//    bsr with one broadcast x per 16x1 block, four 4x1 blocks per vector (x values repeated by vpermps),
//    four 1x4 or two 1x8 blocks per vector (x loaded contiguously); other N:M with vexpandps placing the
//    stored values at their mask positions.
//  - batched (MT = 16 activation rows in one zmm): x86_batched.h on 16 lanes.
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "common/simd/x86_avx512.h"
#include "kernels/spmm/x86_gemv.h"

constexpr int kBsrRowsPerPass = 16;  // 32 registers: a 16x1 block's 16 accumulators in one pass
constexpr int kNmRowBlock = 4;       // eight independent accumulator chains hide the FMA latency
#include "kernels/spmm/x86_batched.h"

// 16 stored values (fp32, or int8 widened): the simd header's full-width loads.
template <typename T>
inline __m512 load16(const T* p) {
  if constexpr (std::is_same<T, float>::value) return vload(p);
  else return vload_i8(p);
}

template <typename V>
inline __m512 load16z(const V* p, __mmask16 m);
template <>
inline __m512 load16z<float>(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
template <>
inline __m512 load16z<int8_t>(const int8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// ---------------------------------------------------------------- bsr, GEMV

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<16, 1>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (; i + 4 <= e; i += 4)
      for (int u = 0; u < 4; ++u)
        a[u] = _mm512_fmadd_ps(load16<V>(blk.vals + (i + u) * 16), _mm512_set1_ps(x[blk.col(i + u)]), a[u]);
    for (; i < e; ++i)
      a[0] = _mm512_fmadd_ps(load16<V>(blk.vals + i * 16), _mm512_set1_ps(x[blk.col(i)]), a[0]);
    __m512 r = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
    if (w.scales) r = _mm512_mul_ps(r, _mm512_loadu_ps(w.scales + b * 16));
    const int64_t rows = w.n - b * 16;
    _mm512_mask_storeu_ps(y + b * 16, rows >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1), r);
  });
}

inline __m128 gather4(const float* x, int64_t c0, int64_t c1, int64_t c2, int64_t c3) {
  const __m128 p01 = _mm_insert_ps(_mm_load_ss(x + c0), _mm_load_ss(x + c1), 0x10);
  const __m128 p23 = _mm_insert_ps(_mm_load_ss(x + c2), _mm_load_ss(x + c3), 0x10);
  return _mm_movelh_ps(p01, p23);
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<4, 1>) {
  const __m512i rep = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m512 acc = _mm512_setzero_ps(), acc1 = acc;
    for (; i + 8 <= e; i += 8) {
      const __m128 x0 = gather4(x, blk.col(i), blk.col(i + 1), blk.col(i + 2), blk.col(i + 3));
      const __m128 x1 = gather4(x, blk.col(i + 4), blk.col(i + 5), blk.col(i + 6), blk.col(i + 7));
      acc = _mm512_fmadd_ps(load16<V>(blk.vals + i * 4), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(x0)), acc);
      acc1 = _mm512_fmadd_ps(load16<V>(blk.vals + i * 4 + 16), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(x1)),
                             acc1);
    }
    acc = _mm512_add_ps(acc, acc1);
    for (; i + 4 <= e; i += 4) {
      const __m128 xv = gather4(x, blk.col(i), blk.col(i + 1), blk.col(i + 2), blk.col(i + 3));
      acc = _mm512_fmadd_ps(load16<V>(blk.vals + i * 4), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(xv)), acc);
    }
    if (i < e) {  // 1..3 blocks: missing ones read block i's column, with zero weights
      const int64_t rem = e - i, c0 = blk.col(i);
      const int64_t c1 = rem > 1 ? blk.col(i + 1) : c0, c2 = rem > 2 ? blk.col(i + 2) : c0;
      const __m128 xv = gather4(x, c0, c1, c2, c0);
      const __mmask16 m = static_cast<__mmask16>((1u << (4 * rem)) - 1);
      acc = _mm512_fmadd_ps(load16z<V>(blk.vals + i * 4, m), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(xv)), acc);
    }
    __m128 r = _mm_add_ps(_mm_add_ps(_mm512_castps512_ps128(acc), _mm512_extractf32x4_ps(acc, 1)),
                          _mm_add_ps(_mm512_extractf32x4_ps(acc, 2), _mm512_extractf32x4_ps(acc, 3)));
    if (w.scales) r = _mm_mul_ps(r, _mm_loadu_ps(w.scales + b * 4));
    const int64_t rows = w.n - b * 4;
    _mm_mask_storeu_ps(y + b * 4, rows >= 4 ? __mmask8(0xF) : __mmask8((1u << rows) - 1), r);
  });
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<1, 4>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (; i + 8 <= e; i += 8) {
      __m512 x0 = _mm512_castps128_ps512(_mm_loadu_ps(x + blk.col(i) * 4));
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + blk.col(i + 1) * 4), 1);
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + blk.col(i + 2) * 4), 2);
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + blk.col(i + 3) * 4), 3);
      __m512 x1 = _mm512_castps128_ps512(_mm_loadu_ps(x + blk.col(i + 4) * 4));
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + blk.col(i + 5) * 4), 1);
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + blk.col(i + 6) * 4), 2);
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + blk.col(i + 7) * 4), 3);
      a0 = _mm512_fmadd_ps(load16<V>(blk.vals + i * 4), x0, a0);
      a1 = _mm512_fmadd_ps(load16<V>(blk.vals + i * 4 + 16), x1, a1);
    }
    const __m128 t = bsr1x4_rest(blk, i, e, x);
    const float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + _mm512_reduce_add_ps(_mm512_castps128_ps512(t)) ;
    if (b < w.n) y[b] = r * row_scale(w, b);
  });
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<1, 8>) {
  bsr_gemv_rows<V>(w, u0, u1, [&](int64_t b, int64_t i, int64_t e, const BsrBlocks<V>& blk) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m256 t = _mm256_setzero_ps();
    for (; i + 4 <= e; i += 4) {
      const __m512 x0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x + blk.col(i) * 8)),
                                           _mm256_loadu_ps(x + blk.col(i + 1) * 8), 1);
      const __m512 x1 = _mm512_insertf32x8(
          _mm512_castps256_ps512(_mm256_loadu_ps(x + blk.col(i + 2) * 8)),
          _mm256_loadu_ps(x + blk.col(i + 3) * 8), 1);
      a0 = _mm512_fmadd_ps(load16<V>(blk.vals + i * 8), x0, a0);
      a1 = _mm512_fmadd_ps(load16<V>(blk.vals + i * 8 + 16), x1, a1);
    }
    for (; i < e; ++i)
      t = _mm256_fmadd_ps(csr_load8<V>(blk.vals + i * 8), _mm256_loadu_ps(x + blk.col(i) * 8), t);
    const float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_castps256_ps512(t)));
    if (b < w.n) y[b] = r * row_scale(w, b);
  });
}

// ---------------------------------------------------------------- nm

template <typename V>
void nm_other_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kc = w.kc, vpc = w.vpc;
  const __mmask16 vm = static_cast<__mmask16>((1u << vpc) - 1);
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    const uint16_t* mp = w.masks + row * kc;
    const V* vp = vals + row * kc * vpc;
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t ch = 0;
    for (; ch + 4 <= kc; ch += 4)
      for (int u = 0; u < 4; ++u)
        a[u] = _mm512_fmadd_ps(_mm512_maskz_expand_ps(mp[ch + u], load16z<V>(vp + (ch + u) * vpc, vm)),
                               _mm512_loadu_ps(x + (ch + u) * kNmChunk), a[u]);
    for (; ch < kc; ++ch)
      a[0] = _mm512_fmadd_ps(_mm512_maskz_expand_ps(mp[ch], load16z<V>(vp + ch * vpc, vm)),
                             _mm512_loadu_ps(x + ch * kNmChunk), a[0]);
    const __m512 r = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
    y[row] = _mm512_reduce_add_ps(r) * row_scale(w, row);
  }
}

}  // namespace
}  // namespace avx512

#define SLIMNN_SPMM_ISA avx512
#define SLIMNN_SPMM_IF_avx512(kind, name, gemv) SLIMNN_SPMM_DEFINE(kind, name, gemv)
#include "kernels/spmm/x86_entries.h"
#undef SLIMNN_SPMM_ISA

}  // namespace slimnn
