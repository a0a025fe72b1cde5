// AMX-INT8: the W8A8 dynamic kernel (tdpbusd, u8 activations x s8 weights), from amx_q8.h over the real
// tile instructions. The row quantizer is the AVX-512 one (every AMX CPU has AVX-512 F/BW).
#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace amx {
namespace {

#include "common/simd/x86_amx.h"
#include "common/simd/x86_amx_blocks.h"
#include "kernels/qgemm/amx_q8.h"

}  // namespace
}  // namespace amx

SLIMNN_AMX_Q8_EXPORTS(amx, qgemm_q8_u8_32x64__amx)

bool quantize_row_u8__avx512(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

bool quantize_row_u8__amx(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  return quantize_row_u8__avx512(x, k, kp, q, scale, zp);
}

}  // namespace slimnn
