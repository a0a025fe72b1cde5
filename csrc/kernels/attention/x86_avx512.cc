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
inline float hmax(V x) { return _mm512_reduce_max_ps(x); }
inline float hsum(V x) { return _mm512_reduce_add_ps(x); }

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

#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace avx512

void attention_f32_flash__avx512(const AttnTile& t) { avx512::flash_tile(t); }
void attention_exp_f32__avx512(const float* x, float* y, int64_t n) { avx512::exp_array(x, y, n); }

}  // namespace slimnn
