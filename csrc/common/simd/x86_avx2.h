// AVX2 + FMA fp32 vector helpers: 8 lanes. Include inside the ISA's own namespace of a file compiled with
// the avx2 flags (cmake/isa_flags.cmake), after <immintrin.h>: every copy then carries that file's flags
// only, and the per-ISA namespace keeps the copies apart (ODR-safe). x86_avx512.h offers the same names on
// 16 lanes, so a family writes its math once over V / W (a plain template or a shared body header).
// (not a header guard: included once per ISA translation unit, inside a namespace)
//
// Masks (M) are vectors of all-ones / all-zero lanes. Tails: vload_n / vstore_n touch only the first n
// floats (vmaskmovps: masked lanes neither load nor fault); loaded lanes >= n are zero.

using V = __m256;
using M = __m256;
constexpr int W = 8;

inline __m256i first_n(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
inline M mask_n(int n) { return _mm256_castsi256_ps(first_n(n)); }
inline V vzero() { return _mm256_setzero_ps(); }
inline V vset1(float f) { return _mm256_set1_ps(f); }
inline V vload(const float* p) { return _mm256_loadu_ps(p); }
inline V vloada(const float* p) { return _mm256_load_ps(p); }
inline void vstore(float* p, V x) { _mm256_storeu_ps(p, x); }
inline V vload_n(const float* p, int n) { return n >= 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_n(n)); }
inline void vstore_n(float* p, V x, int n) {
  if (n >= 8)
    _mm256_storeu_ps(p, x);
  else
    _mm256_maskstore_ps(p, first_n(n), x);
}
// Lanes of mask m only (the others read as 0 / left untouched; masked lanes neither load nor fault).
inline V vload_m(const float* p, M m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
inline void vstore_m(float* p, M m, V x) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), x); }
// W int8 values widened to fp32 (reads exactly W bytes).
inline V vload_i8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// W uint8 values widened to fp32 (reads exactly W bytes).
inline V vload_u8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
inline V vabs(V x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
inline V vround(V x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline M vgt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline M vge(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_GE_OQ); }
inline V vselect(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }  // a where m is set, else b
inline V vfill_from(V x, int n, float f) { return _mm256_blendv_ps(_mm256_set1_ps(f), x, mask_n(n)); }

// Reductions (hsum, hsum4: x86_shared.h, over half4).
inline float hmax(V x) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline __m128 half4(V a) { return _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)); }

// x * 2^n for integral n (as floats) with 2^n normal (-126 <= n <= 127): one exact power-of-two product.
inline V vscale_pow2_normal(V x, V n) {
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(x, _mm256_castsi256_ps(bits));
}
// x * 2^n for integral n in [-150, 128]: AVX2 has no scalef, so two exact power-of-two factors 2^(n/2) and
// 2^(n - n/2) (each normal), the second product rounding once, into the subnormal range when it must.
inline V pow2i(__m256i k) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23)); }
inline V vscale_pow2(V x, V n) {
  const __m256i ni = _mm256_cvtps_epi32(n);  // NaN -> INT_MIN: garbage scale, but x is NaN already
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  return _mm256_mul_ps(_mm256_mul_ps(x, pow2i(n1)), pow2i(n2));
}

// The arithmetic and sums both widths share, spelled with this width's intrinsics.
#define SLIMNN_MM(op) _mm256_##op
#include "common/simd/x86_shared.h"
#undef SLIMNN_MM
