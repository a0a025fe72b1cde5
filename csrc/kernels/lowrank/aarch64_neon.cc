// NEON: the fp32 dot-product micro-kernels of the lowrank family (x86_dot.h) on 4 lanes
// (common/simd/arm_neon.h). 32 vector registers hold the 4 x 4 accumulators of the tile form with room for
// the operands (XNNPACK's aarch64 fp32 GEMMs also run 4 rows of accumulators per panel); the tail (k % 4)
// goes through vload_n's stack buffer, reading nothing past k.
#include <arm_neon.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace lr_neon {
namespace {
#include "common/simd/arm_neon.h"
#include "kernels/lowrank/x86_dot.h"
}  // namespace
}  // namespace lr_neon

#define SLIMNN_LR_ISA lr_neon
#define SLIMNN_LR_IF_neon(name, gemv) SLIMNN_LR_DEFINE(name, gemv)
#include "kernels/lowrank/x86_entries.h"
#undef SLIMNN_LR_IF_neon
#undef SLIMNN_LR_ISA

}  // namespace slimnn
