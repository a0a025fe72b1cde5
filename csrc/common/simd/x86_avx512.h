// AVX-512 F/BW/VL/DQ fp32 vector helpers: 16 lanes, the names of x86_avx2.h (read its header comment).
// Include inside the ISA's own namespace of a file compiled with (at least) the avx512 flags.
// (not a header guard: included once per ISA translation unit, inside a namespace)
//
// Masks (M) are __mmask16. Tails are masked loads / stores (nothing touched past n).
// Own reductions: gcc 12's _mm512_reduce_* and _mm512_castps512_ps256 trip -Wuninitialized inside its
// headers (_mm256_undefined_pd); extractf32x8 (AVX-512 DQ) does not.

using V = __m512;
using M = __mmask16;
constexpr int W = 16;

inline M mask_n(int n) { return n >= 16 ? M(0xffff) : n <= 0 ? M(0) : M((1u << n) - 1); }
inline __mmask16 first_n(int n) { return mask_n(n); }
inline V vzero() { return _mm512_setzero_ps(); }
inline V vset1(float f) { return _mm512_set1_ps(f); }
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline V vloada(const float* p) { return _mm512_load_ps(p); }
inline void vstore(float* p, V x) { _mm512_storeu_ps(p, x); }
inline V vload_n(const float* p, int n) { return _mm512_maskz_loadu_ps(mask_n(n), p); }
inline void vstore_n(float* p, V x, int n) { _mm512_mask_storeu_ps(p, mask_n(n), x); }
// Lanes of mask m only (the others read as 0 / left untouched).
inline V vload_m(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
inline void vstore_m(float* p, M m, V x) { _mm512_mask_storeu_ps(p, m, x); }
// W int8 values widened to fp32 (reads exactly W bytes).
inline V vload_i8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
// W uint8 values widened to fp32 (reads exactly W bytes). The maskz forms: the plain ones trip gcc 12's
// -Wuninitialized inside its own header (_mm512_undefined_*) when inlined into the depthwise templates.
inline V vload_u8(const uint8_t* p) {
  const __m512i w = _mm512_maskz_cvtepu8_epi32(0xffff, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm512_maskz_cvtepi32_ps(0xffff, w);
}
inline V vabs(V x) {
  return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(_mm512_set1_ps(-0.0f)), _mm512_castps_si512(x)));
}
inline V vround(V x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline M vgt(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
inline M vge(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ); }
inline V vselect(M m, V a, V b) { return _mm512_mask_blend_ps(m, b, a); }  // a where m is set, else b
inline V vfill_from(V x, int n, float f) { return _mm512_mask_blend_ps(mask_n(n), _mm512_set1_ps(f), x); }

// Reductions: 16 -> 8 -> 4 lanes, then as x86_avx2.h.
inline __m256 half8(V x) { return _mm256_add_ps(_mm512_extractf32x8_ps(x, 0), _mm512_extractf32x8_ps(x, 1)); }
inline float hmax(V x) {
  const __m256 m8 = _mm256_max_ps(_mm512_extractf32x8_ps(x, 0), _mm512_extractf32x8_ps(x, 1));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline __m128 half4(V a) {
  const __m256 a8 = half8(a);
  return _mm_add_ps(_mm256_castps256_ps128(a8), _mm256_extractf128_ps(a8, 1));
}

// x * 2^n for integral n (as floats): scalef rounds once, into the subnormal range when it must, and gives
// 0 / inf at the ends. The same instruction serves both contracts of x86_avx2.h.
inline V vscale_pow2_normal(V x, V n) { return _mm512_scalef_ps(x, n); }
inline V vscale_pow2(V x, V n) { return _mm512_scalef_ps(x, n); }

// The arithmetic and sums both widths share, spelled with this width's intrinsics.
#define SLIMNN_MM(op) _mm512_##op
#include "common/simd/x86_shared.h"
#undef SLIMNN_MM
