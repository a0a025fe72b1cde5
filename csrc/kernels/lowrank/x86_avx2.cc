// AVX2 + FMA: fp32 dot-product micro-kernels for the lowrank family (same scheme as x86_avx512.cc, 8 lanes).
// The tail (k % 8) uses vmaskmovps, which reads nothing past k (masked lanes neither load nor fault).
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx2 {
namespace {

inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m128 a4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 b4 = _mm_add_ps(_mm256_castps256_ps128(b), _mm256_extractf128_ps(b, 1));
  const __m128 c4 = _mm_add_ps(_mm256_castps256_ps128(c), _mm256_extractf128_ps(c, 1));
  const __m128 d4 = _mm_add_ps(_mm256_castps256_ps128(d), _mm256_extractf128_ps(d, 1));
  return _mm_hadd_ps(_mm_hadd_ps(a4, b4), _mm_hadd_ps(c4, d4));
}

template <int MR, int NR>
void dot(int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw, const float* bias, float* y,
         int64_t ldy) {
  __m256 acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= k; c += 8) {
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_loadu_ps(x + i * ldx + c);
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + j * ldw + c);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  if (c < k) {
    const __m256i mk = _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k - c)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm256_maskload_ps(x + i * ldx + c, mk);
    for (int j = 0; j < NR; ++j) {
      const __m256 wv = _mm256_maskload_ps(w + j * ldw + c, mk);
      for (int i = 0; i < MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
    }
  }
  constexpr int NR4 = (NR + 3) / 4 * 4;
  const __m256 zero = _mm256_setzero_ps();
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
}  // namespace avx2

void lowrank_f32_1x8__avx2(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                           const float* bias, float* y, int64_t ldy) {
  using namespace avx2;
  static constexpr Fn kFns[8] = {&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>,
                                 &dot<1, 5>, &dot<1, 6>, &dot<1, 7>, &dot<1, 8>};
  for (int i = 0; i < mr; ++i) kFns[nr - 1](k, x + i * ldx, ldx, w, ldw, bias, y + i * ldy, ldy);
}

void lowrank_f32_3x4__avx2(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                           const float* bias, float* y, int64_t ldy) {
  using namespace avx2;
  static constexpr Fn kFns[3][4] = {{&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>},
                                    {&dot<2, 1>, &dot<2, 2>, &dot<2, 3>, &dot<2, 4>},
                                    {&dot<3, 1>, &dot<3, 2>, &dot<3, 3>, &dot<3, 4>}};
  kFns[mr - 1][nr - 1](k, x, ldx, w, ldw, bias, y, ldy);
}

}  // namespace slimnn
