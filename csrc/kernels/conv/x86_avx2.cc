// AVX2: depthwise kernels (8 channels per vector) and the activation quantizer.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "kernels/conv/conv.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "common/simd/x86_avx2.h"

#include "kernels/conv/dw_impl.inc"

}  // namespace
}  // namespace avx2

void conv_dw_f32_3x3__avx2(const DwArgs& a, int64_t ox0, int64_t ox1) { avx2::dw_fixed_entry<3>(a, ox0, ox1); }
void conv_dw_f32_5x5__avx2(const DwArgs& a, int64_t ox0, int64_t ox1) { avx2::dw_fixed_entry<5>(a, ox0, ox1); }
void conv_dw_f32_general__avx2(const DwArgs& a, int64_t ox0, int64_t ox1) { avx2::dw_general_entry(a, ox0, ox1); }
void conv_clamp__avx2(float* y, int64_t n, float lo, float hi) { avx2::clamp_row(y, n, lo, hi); }
void conv_hardswish__avx2(float* y, int64_t n) { avx2::hardswish_row(y, n); }

// requant_row of dw_impl.inc, 8 at a time, then its scalar loop on the tail
bool conv_requant_u8__avx2(const float* x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi, uint8_t* q) {
  const __m256 vinv = _mm256_set1_ps(inv), flo = _mm256_set1_ps(float(lo - zp)), fhi = _mm256_set1_ps(float(hi - zp));
  const __m256 big = _mm256_set1_ps(std::numeric_limits<float>::max());
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256i vzp = _mm256_set1_epi32(zp);
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, absmask), big, _CMP_NLE_UQ));
    const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, vinv), flo), fhi);
    const __m256i r = _mm256_add_epi32(_mm256_cvtps_epi32(t), vzp);  // in [lo, hi]: the packs do not saturate
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packus_epi16(w, w));
  }
  const bool tail_ok = avx2::requant_row(x + i, n - i, inv, zp, lo, hi, q + i);
  return tail_ok && !_mm256_movemask_ps(bad);
}

bool conv_minmax__avx2(const float* x, int64_t n, float* mn, float* mx) {
  __m256 lo = _mm256_set1_ps(*mn), hi = _mm256_set1_ps(*mx);
  const __m256 inf = _mm256_set1_ps(std::numeric_limits<float>::infinity());
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 bad = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, absmask), inf, _CMP_NLT_UQ));
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  if (_mm256_movemask_ps(bad)) return false;
  float l[8], h[8];
  _mm256_storeu_ps(l, lo);
  _mm256_storeu_ps(h, hi);
  float a = l[0], b = h[0];
  for (int j = 1; j < 8; ++j) a = l[j] < a ? l[j] : a, b = h[j] > b ? h[j] : b;
  for (; i < n; ++i) {
    if (!(std::fabs(x[i]) <= std::numeric_limits<float>::max())) return false;
    a = x[i] < a ? x[i] : a;
    b = x[i] > b ? x[i] : b;
  }
  *mn = a, *mx = b;
  return true;
}

void conv_quantize_u8__avx2(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q) {
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i vzp = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j)
      v[j] = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), vinv)), vzp);
    // packs saturate (signed to int16, then int16 to uint8: negatives to 0, above 255 to 255); the lane
    // interleaving of the two packs is undone by one cross-lane permute.
    const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
    const __m256i b = _mm256_packus_epi16(w01, w23);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
  for (; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(std::nearbyint(x[i] * inv)) + zp;
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

}  // namespace slimnn
