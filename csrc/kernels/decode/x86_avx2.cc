// torch-order SiLU on 8 lanes (x86_silu.h over common/simd/x86_avx2.h).
#include <immintrin.h>

#include <cstdint>

namespace slimnn {
namespace decode_avx2 {
namespace {
#include "common/simd/x86_avx2.h"
#include "kernels/decode/torch_silu.inc"
#include "kernels/decode/x86_silu.h"
}  // namespace
}  // namespace decode_avx2

void torch_silu_f32__avx2(float* y, int64_t n) { decode_avx2::ts_silu(y, n); }

}  // namespace slimnn
