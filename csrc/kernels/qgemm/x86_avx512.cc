// AVX-512 F/BW/VL/DQ: weight-only kernels (fp32 activations, int8 weights widened to fp32 in registers).
//
// Each 16-byte quarter of a 64-byte q8 step holds 4 columns x 4 k; widened to fp32 it is multiplied by the
// activations x[k..k+3] repeated in every 128-bit lane, so an accumulator keeps 4 columns x 4 partial sums
// and the 4 partials are folded once per group (reduce4x4 below).
#include <immintrin.h>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace avx512 {
namespace {

inline __mmask16 col_mask(int64_t ncols, int p) {
  const int64_t rem = ncols - int64_t(p) * 16;
  return rem >= 16 ? __mmask16(0xFFFF) : (rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1));
}

// acc[j] lane-block b holds column 4j+b's four partial sums; returns the 16 column totals in order.
inline __m512 reduce4x4(const __m512 (&acc)[4]) {
  const __m512 sab = _mm512_add_ps(_mm512_unpacklo_ps(acc[0], acc[1]), _mm512_unpackhi_ps(acc[0], acc[1]));
  const __m512 scd = _mm512_add_ps(_mm512_unpacklo_ps(acc[2], acc[3]), _mm512_unpackhi_ps(acc[2], acc[3]));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(sab, scd, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(sab, scd, _MM_SHUFFLE(3, 2, 3, 2)));
  // r[4*b + j] = column 4*j + b
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, r);
}

template <int MR, int NP>
void wo(const float* x, int64_t ldx, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  const int64_t k4n = kp / 4;
  __m512 out[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) out[m][p] = _mm512_setzero_ps();
  for (int64_t g = 0; g < e.n_groups; ++g) {
    const int64_t k4_0 = g * e.group_k4, k4_1 = k4_0 + e.group_k4 < k4n ? k4_0 + e.group_k4 : k4n;
    __m512 acc[MR][NP][4];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p)
        for (int j = 0; j < 4; ++j) acc[m][p][j] = _mm512_setzero_ps();
    for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
      __m512 wf[NP][4];
      for (int p = 0; p < NP; ++p)
        for (int j = 0; j < 4; ++j)
          wf[p][j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + p * 16 * kp + k4 * 64 + j * 16))));
      for (int m = 0; m < MR; ++m) {
        const __m512 xv = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + k4 * 4));
        for (int p = 0; p < NP; ++p)
          for (int j = 0; j < 4; ++j) acc[m][p][j] = _mm512_fmadd_ps(wf[p][j], xv, acc[m][p][j]);
      }
    }
    for (int p = 0; p < NP; ++p) {
      const __m512 sg = _mm512_loadu_ps(e.scales + g * e.np + p * 16);
      for (int m = 0; m < MR; ++m) out[m][p] = _mm512_fmadd_ps(reduce4x4(acc[m][p]), sg, out[m][p]);
    }
  }
  for (int p = 0; p < NP; ++p) {
    const __mmask16 mask = col_mask(e.ncols, p);
    if (!mask) continue;
    const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mask, e.bias + p * 16) : _mm512_setzero_ps();
    for (int m = 0; m < MR; ++m) _mm512_mask_storeu_ps(e.y + m * e.ldy + p * 16, mask, _mm512_add_ps(out[m][p], bias));
  }
}

}  // namespace
}  // namespace avx512

void qgemm_q8_f32_1x64__avx512(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                               const Q8Epilogue& e) {
  using namespace avx512;
  for (int m = 0; m < mr; ++m) {
    Q8Epilogue em = e;
    em.y = e.y + m * e.ldy;
    switch (panels) {
      case 1: wo<1, 1>(x + m * ldx, ldx, w, kp, em); break;
      case 2: wo<1, 2>(x + m * ldx, ldx, w, kp, em); break;
      case 3: wo<1, 3>(x + m * ldx, ldx, w, kp, em); break;
      default: wo<1, 4>(x + m * ldx, ldx, w, kp, em); break;
    }
  }
}

void qgemm_q8_f32_4x16__avx512(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                               const Q8Epilogue& e) {
  using namespace avx512;
  (void)panels;  // NP == 1
  switch (mr) {
    case 1: return wo<1, 1>(x, ldx, w, kp, e);
    case 2: return wo<2, 1>(x, ldx, w, kp, e);
    case 3: return wo<3, 1>(x, ldx, w, kp, e);
    default: return wo<4, 1>(x, ldx, w, kp, e);
  }
}

}  // namespace slimnn
