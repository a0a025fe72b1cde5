// AMX-BF16 weight-only panels (q8, q4): amx_bf16.h over the real tile instructions (tdpbf16ps). Entries
// qgemm_q8_f32_32x32__amx_bf16 / qgemm_q4_f32_32x32__amx_bf16 (isa bit amx_bf16, listed in the qgemm and
// q4gemm kernels.inc under the amx word of this file); opt-in, see wo_amx_bf16_min_rows() in wogemm.h.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/act/act.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {
namespace amx_wo {
namespace {

#include "common/simd/x86_amx.h"
#include "kernels/wogemm/amx_bf16.h"

}  // namespace
}  // namespace amx_wo

#define SLIMNN_WO_ISA amx_wo
#define SLIMNN_WO_IF_amx(kind, name) SLIMNN_WO_##kind(name)
#include "kernels/wogemm/entries.h"
#undef SLIMNN_WO_ISA

}  // namespace slimnn
