// AMX-INT8: the W4A8 dynamic kernel (tdpbusd, u8 activations x 4-bit codes unpacked to bytes in L1), from
// amx_q4.h over the real tile instructions. Its row quantizer is qgemm's quantize_row_u8__amx.
#include <immintrin.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "formats/q4.h"
#include "kernels/q4gemm/q4gemm.h"

namespace slimnn {
namespace q4amx {
namespace {

#include "common/simd/x86_amx.h"
#include "common/simd/x86_amx_blocks.h"
#include "kernels/q4gemm/amx_q4.h"

}  // namespace
}  // namespace q4amx

SLIMNN_AMX_Q4_EXPORTS(q4amx, qgemm_q4_u8_32x64__amx)

}  // namespace slimnn
