// AVX-512 F: the attention tile (flash_tile.h) on 16 fp32 lanes, and its exp.
//
// exp(x): x clamped to [-104, 89] (exp(-104) rounds to 0 in fp32, exp(89) overflows; the clamps keep NaN),
// n = round(x log2 e), r = x - n ln2 (ln2 split hi/lo, both by FMA, |r| <= ln2/2), exp(r) by its degree-7
// Taylor polynomial (truncation < 6e-9 relative, under half an ulp), then scalef by 2^n, which rounds once
// into the subnormal range and gives 0 / inf at the ends. Measured within 2 ulp of correctly rounded expf
// (tests/test_attention.py::test_exp_accuracy).
#include <immintrin.h>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace avx512 {
namespace {

using V = __m512;
constexpr int W = 16;

inline __mmask16 first_n(int n) { return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
inline V vzero() { return _mm512_setzero_ps(); }
inline V vset1(float f) { return _mm512_set1_ps(f); }
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline V vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(first_n(n), p); }
inline void vstore_n(float* p, V x, int n) { _mm512_mask_storeu_ps(p, first_n(n), x); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vsub(V a, V b) { return _mm512_sub_ps(a, b); }
inline V vmax(V a, V b) { return _mm512_max_ps(a, b); }
inline V vfill_from(V x, int n, float f) { return _mm512_mask_blend_ps(first_n(n), _mm512_set1_ps(f), x); }
// Own reductions: gcc 12's _mm512_reduce_* and _mm512_castps512_ps256 trip -Wuninitialized inside its headers
// (_mm256_undefined_pd); extractf32x8 (AVX-512 DQ) does not.
inline float hmax(V x) {
  const __m256 m8 = _mm256_max_ps(_mm512_extractf32x8_ps(x, 0), _mm512_extractf32x8_ps(x, 1));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hsum(V x) {
  const __m256 s8 = _mm256_add_ps(_mm512_extractf32x8_ps(x, 0), _mm512_extractf32x8_ps(x, 1));
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

inline V vexp(V x) {
  x = _mm512_max_ps(_mm512_set1_ps(-104.0f), x);  // (a > b ? a : b): a NaN x is kept
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), x);
  const V n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  V r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417232e-6f), r);
  V p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// kt[e][j] = k[j][e] (the flash_tile.h contract) by 16 x 16 in-register transposes: masked row loads (nothing
// read past d), rows past nb are zero vectors, which are exactly the zero columns [nb, round_up(nb, 16)).
inline void transpose16(V* r) {
  V u[16];
  for (int i = 0; i < 16; i += 4) {  // rows i..i+3: u[i + c] lane L = rows i..i+3 at column 4L + c
    const V a = _mm512_unpacklo_ps(r[i], r[i + 1]), b = _mm512_unpackhi_ps(r[i], r[i + 1]);
    const V c = _mm512_unpacklo_ps(r[i + 2], r[i + 3]), d = _mm512_unpackhi_ps(r[i + 2], r[i + 3]);
    u[i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
  }
  for (int c = 0; c < 4; ++c) {  // output row 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]
    const V v01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v23 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const V w01 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), w23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v01, w01, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v01, w01, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v23, w23, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v23, w23, 0xDD);
  }
}

#define SLIMNN_ATTN_HAVE_PACK_KT 1
#define SLIMNN_ATTN_ROWS 8  // 32 registers: 8 rows x 2 vectors of accumulators fit
inline void pack_kt(const float* k, int64_t ldk, int64_t nb, int64_t d, float* kt, int64_t ldkt) {
  for (int64_t j = 0; j < nb; j += 16) {
    const int nj = int(nb - j < 16 ? nb - j : 16);
    for (int64_t e = 0; e < d; e += 16) {
      const int ne = int(d - e < 16 ? d - e : 16);
      const __mmask16 me = first_n(ne);
      V r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < nj ? _mm512_maskz_loadu_ps(me, k + (j + i) * ldk + e) : _mm512_setzero_ps();
      transpose16(r);
      for (int c = 0; c < ne; ++c) _mm512_storeu_ps(kt + (e + c) * ldkt + j, r[c]);
    }
  }
}

#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace avx512

void attention_f32_flash__avx512(const AttnTile& t) { avx512::flash_tile(t); }
void attention_exp_f32__avx512(const float* x, float* y, int64_t n) { avx512::exp_array(x, y, n); }

}  // namespace slimnn
