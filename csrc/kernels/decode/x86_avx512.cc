// torch-order SiLU on 16 lanes (x86_silu.h).
#include <immintrin.h>

#include <cstdint>

namespace slimnn {
namespace decode_avx512 {
namespace {
#include "kernels/decode/torch_silu.inc"
using V = __m512;
using VI = __m512i;
constexpr int kLanes = 16;
inline V vset(float a) { return _mm512_set1_ps(a); }
inline V vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm512_storeu_ps(p, v); }
inline V vmul(V a, V b) { return _mm512_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm512_add_ps(a, b); }
inline V vdiv(V a, V b) { return _mm512_div_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
inline V vneg(V a) { return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a), _mm512_set1_epi32(int(0x80000000u)))); }
inline V vround(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline VI vcvt(V a) { return _mm512_cvtps_epi32(a); }
inline VI vsrai1(VI a) { return _mm512_srai_epi32(a, 1); }
inline VI vsubi(VI a, VI b) { return _mm512_sub_epi32(a, b); }
inline V vpow2i(VI q) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(q, _mm512_set1_epi32(127)), 23)); }
inline V vlow_zero(V d, V u) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(d, vset(kTsLow), _CMP_NLT_UQ), u); }
inline V vhigh_inf(V d, V u) {
  return _mm512_mask_mov_ps(u, _mm512_cmp_ps_mask(vset(kTsHigh), d, _CMP_LT_OQ), vset(__builtin_inff()));
}
#include "kernels/decode/x86_silu.h"
}  // namespace
}  // namespace decode_avx512

void torch_silu_f32__avx512(float* y, int64_t n) { decode_avx512::ts_silu(y, n); }

}  // namespace slimnn
