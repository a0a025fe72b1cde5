// The q4 AMX kernel's emulated twin, qgemm_q4_u8_32x64__amxemu: amx_q4.h compiled over the portable tile
// emulation (common/simd/x86_amx.h with SLIMNN_AMX_EMULATE), no ISA flags. Test-only: listed apart from
// kernels.inc (q4_emulated_kernel_table, select.cc), so automatic dispatch never sees it; tests force it by
// name to check the AMX kernel's unpacking, tails, groups, threading and epilogues on any CPU. Slow (scalar
// tiles).
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>

#include "formats/q4.h"
#include "kernels/q4gemm/q4gemm.h"

#define SLIMNN_AMX_EMULATE 1

namespace slimnn {
namespace q4amxemu {
namespace {

#include "common/simd/x86_amx.h"
#include "common/simd/x86_amx_blocks.h"
#include "kernels/q4gemm/amx_q4.h"

}  // namespace
}  // namespace q4amxemu

SLIMNN_AMX_Q4_EXPORTS(q4amxemu, qgemm_q4_u8_32x64__amxemu)

}  // namespace slimnn
