// torch-order SiLU on 8 lanes (x86_silu.h).
#include <immintrin.h>

#include <cstdint>

namespace slimnn {
namespace decode_avx2 {
namespace {
#include "kernels/decode/torch_silu.inc"
using V = __m256;
using VI = __m256i;
constexpr int kLanes = 8;
inline V vset(float a) { return _mm256_set1_ps(a); }
inline V vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, V v) { _mm256_storeu_ps(p, v); }
inline V vmul(V a, V b) { return _mm256_mul_ps(a, b); }
inline V vadd(V a, V b) { return _mm256_add_ps(a, b); }
inline V vdiv(V a, V b) { return _mm256_div_ps(a, b); }
inline V vfma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
inline V vneg(V a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
inline V vround(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
inline VI vcvt(V a) { return _mm256_cvtps_epi32(a); }
inline VI vsrai1(VI a) { return _mm256_srai_epi32(a, 1); }
inline VI vsubi(VI a, VI b) { return _mm256_sub_epi32(a, b); }
inline V vpow2i(VI q) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(q, _mm256_set1_epi32(127)), 23)); }
inline V vlow_zero(V d, V u) { return _mm256_and_ps(_mm256_cmp_ps(d, vset(kTsLow), _CMP_NLT_UQ), u); }
inline V vhigh_inf(V d, V u) { return _mm256_blendv_ps(u, vset(__builtin_inff()), _mm256_cmp_ps(vset(kTsHigh), d, _CMP_LT_OQ)); }
#include "kernels/decode/x86_silu.h"
}  // namespace
}  // namespace decode_avx2

void torch_silu_f32__avx2(float* y, int64_t n) { decode_avx2::ts_silu(y, n); }

}  // namespace slimnn
