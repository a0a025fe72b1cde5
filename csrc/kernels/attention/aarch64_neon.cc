// NEON: the attention tile (flash_tile.h) on 4 fp32 lanes (common/simd/arm_neon.h) and its exp
// (common/simd/x86_math.h: the same polynomial and range reduction as the x86 files). aarch64 has 32 vector
// registers, like AVX-512, so 8 query rows x 2 vectors of score accumulators fit with the K^T operands.
#include <arm_neon.h>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace attn_neon {
namespace {

#include "common/simd/arm_neon.h"
#include "common/simd/x86_math.h"
#define SLIMNN_ATTN_ROWS 8
#include "kernels/attention/flash_tile.h"
#undef SLIMNN_ATTN_ROWS

}  // namespace
}  // namespace attn_neon

void attention_f32_flash__neon(const AttnTile& t) { attn_neon::flash_tile(t); }
void attention_exp_f32__neon(const float* x, float* y, int64_t n) { attn_neon::exp_array(x, y, n); }

}  // namespace slimnn
