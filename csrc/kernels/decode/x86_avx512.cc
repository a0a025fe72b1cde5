// torch-order SiLU on 16 lanes (x86_silu.h over common/simd/x86_avx512.h).
#include <immintrin.h>

#include <cstdint>

namespace slimnn {
namespace decode_avx512 {
namespace {
#include "common/simd/x86_avx512.h"
#include "kernels/decode/torch_silu.inc"
#include "kernels/decode/x86_silu.h"
}  // namespace
}  // namespace decode_avx512

void torch_silu_f32__avx512(float* y, int64_t n) { decode_avx512::ts_silu(y, n); }

}  // namespace slimnn
