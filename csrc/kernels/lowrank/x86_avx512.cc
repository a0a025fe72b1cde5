// AVX-512 F: fp32 dot-product micro-kernels for the lowrank family (both phases).
//
// Each accumulator holds 16 partial sums of one (row of x, row of w) pair; per step of 16 along k, MR loads
// of x and NR loads of w feed MR * NR FMAs. The tail (k % 16) uses masked loads: nothing past k is read.
// The MR * NR sums are folded once at the end (hsum4: four vectors -> four totals).
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx512 {
namespace {

inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm512_extractf32x8_ps(a, 1));
  const __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm512_extractf32x8_ps(b, 1));
  const __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm512_extractf32x8_ps(c, 1));
  const __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm512_extractf32x8_ps(d, 1));
  const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
  const __m128 b4 = _mm_add_ps(_mm256_castps256_ps128(b8), _mm256_extractf128_ps(b8, 1));
  const __m128 c4 = _mm_add_ps(_mm256_castps256_ps128(c8), _mm256_extractf128_ps(c8, 1));
  const __m128 d4 = _mm_add_ps(_mm256_castps256_ps128(d8), _mm256_extractf128_ps(d8, 1));
  return _mm_hadd_ps(_mm_hadd_ps(a4, b4), _mm_hadd_ps(c4, d4));
}

template <int MR, int NR>
void dot(int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw, const float* bias, float* y,
         int64_t ldy) {
  __m512 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= k; c += 16) {
    __m512 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_loadu_ps(x + i * ldx + c);
    for (int j = 0; j < NR; ++j) {
      const __m512 wv = _mm512_loadu_ps(w + j * ldw + c);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  if (c < k) {
    const __mmask16 mk = __mmask16((1u << (k - c)) - 1);
    __m512 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_maskz_loadu_ps(mk, x + i * ldx + c);
    for (int j = 0; j < NR; ++j) {
      const __m512 wv = _mm512_maskz_loadu_ps(mk, w + j * ldw + c);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  constexpr int NR4 = (NR + 3) / 4 * 4;
  const __m512 zero = _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) {
    alignas(16) float s[NR4];
    for (int j = 0; j < NR4; j += 4) {
      const __m128 v = hsum4(acc[i][j], j + 1 < NR ? acc[i][j + 1] : zero, j + 2 < NR ? acc[i][j + 2] : zero,
                             j + 3 < NR ? acc[i][j + 3] : zero);
      _mm_store_ps(s + j, v);
    }
    float* yi = y + i * ldy;
    for (int j = 0; j < NR; ++j) yi[j] = bias ? s[j] + bias[j] : s[j];
  }
}

using Fn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, const float*, float*, int64_t);

}  // namespace
}  // namespace avx512

void lowrank_f32_1x8__avx512(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                             const float* bias, float* y, int64_t ldy) {
  using namespace avx512;
  static constexpr Fn kFns[8] = {&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>,
                                 &dot<1, 5>, &dot<1, 6>, &dot<1, 7>, &dot<1, 8>};
  for (int i = 0; i < mr; ++i) kFns[nr - 1](k, x + i * ldx, ldx, w, ldw, bias, y + i * ldy, ldy);
}

void lowrank_f32_4x4__avx512(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                             const float* bias, float* y, int64_t ldy) {
  using namespace avx512;
  static constexpr Fn kFns[4][4] = {{&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>},
                                    {&dot<2, 1>, &dot<2, 2>, &dot<2, 3>, &dot<2, 4>},
                                    {&dot<3, 1>, &dot<3, 2>, &dot<3, 3>, &dot<3, 4>},
                                    {&dot<4, 1>, &dot<4, 2>, &dot<4, 3>, &dot<4, 4>}};
  kFns[mr - 1][nr - 1](k, x, ldx, w, ldw, bias, y, ldy);
}

}  // namespace slimnn
