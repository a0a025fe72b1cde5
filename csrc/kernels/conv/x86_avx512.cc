// AVX-512: depthwise kernels (16 channels per vector) and the activation quantizer.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "kernels/conv/conv.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "common/simd/x86_avx512.h"

#include "kernels/conv/dw_impl.inc"

}  // namespace
}  // namespace avx512

void conv_dw_f32_3x3__avx512(const DwArgs& a, int64_t ox0, int64_t ox1) { avx512::dw_fixed_entry<3>(a, ox0, ox1); }
void conv_dw_f32_5x5__avx512(const DwArgs& a, int64_t ox0, int64_t ox1) { avx512::dw_fixed_entry<5>(a, ox0, ox1); }
void conv_dw_f32_general__avx512(const DwArgs& a, int64_t ox0, int64_t ox1) { avx512::dw_general_entry(a, ox0, ox1); }
void conv_clamp__avx512(float* y, int64_t n, float lo, float hi) { avx512::clamp_row(y, n, lo, hi); }
void conv_hardswish__avx512(float* y, int64_t n) { avx512::hardswish_row(y, n); }

// requant_row of dw_impl.inc, 16 at a time (max/min with the product first: a NaN product becomes the bound)
bool conv_requant_u8__avx512(const float* x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi, uint8_t* q) {
  const __m512 vinv = _mm512_set1_ps(inv), flo = _mm512_set1_ps(float(lo - zp)), fhi = _mm512_set1_ps(float(hi - zp));
  const __m512 big = _mm512_set1_ps(std::numeric_limits<float>::max());
  const __m512i vzp = _mm512_set1_epi32(zp);
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), big, _CMP_NLE_UQ);
    const __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, vinv), flo), fhi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(t), vzp)));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    bad |= _mm512_mask_cmp_ps_mask(m, _mm512_abs_ps(v), big, _CMP_NLE_UQ);
    const __m512 t = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, vinv), flo), fhi);
    _mm512_mask_cvtepi32_storeu_epi8(q + i, m, _mm512_add_epi32(_mm512_cvtps_epi32(t), vzp));
  }
  return bad == 0;
}

bool conv_minmax__avx512(const float* x, int64_t n, float* mn, float* mx) {
  __m512 lo = _mm512_set1_ps(*mn), hi = _mm512_set1_ps(*mx);
  const __m512 inf = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  __mmask16 bad = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    // |v| == inf or unordered (NaN): not finite.
    bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(v), inf, _CMP_NLT_UQ);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);  // masked-off lanes read as 0, inside the range already
    bad |= _mm512_mask_cmp_ps_mask(m, _mm512_abs_ps(v), inf, _CMP_NLT_UQ);
    lo = _mm512_min_ps(lo, v);
    hi = _mm512_max_ps(hi, v);
  }
  if (bad) return false;
  *mn = _mm512_reduce_min_ps(lo);
  *mx = _mm512_reduce_max_ps(hi);
  return true;
}

void conv_quantize_u8__avx512(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q) {
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i vzp = _mm512_set1_epi32(zp), zero = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv)), vzp);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtusepi32_epi8(_mm512_max_epi32(v, zero)));
  }
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), vinv)), vzp);
    _mm512_mask_cvtusepi32_storeu_epi8(q + i, m, _mm512_max_epi32(v, zero));
  }
}

}  // namespace slimnn
