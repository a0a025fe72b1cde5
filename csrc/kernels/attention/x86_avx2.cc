// AVX2 + FMA: the attention tile (flash_tile.h) on 8 fp32 lanes (common/simd/x86_avx2.h), and its exp
// (common/simd/x86_math.h).
#include <immintrin.h>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "common/simd/x86_avx2.h"
#include "common/simd/x86_math.h"
#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace avx2

void attention_f32_flash__avx2(const AttnTile& t) { avx2::flash_tile(t); }
void attention_exp_f32__avx2(const float* x, float* y, int64_t n) { avx2::exp_array(x, y, n); }

}  // namespace slimnn
