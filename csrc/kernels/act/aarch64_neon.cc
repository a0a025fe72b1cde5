// NEON activations: x86_act.h (the one vector body of the x86 files) on 4 lanes (common/simd/arm_neon.h),
// bit-identical to the portable kernel like the x86 paths (fused FMAs, frintn, IEEE division; the family
// is compiled with -ffp-contract=off).
#include <arm_neon.h>

#include "kernels/act/act.h"

namespace slimnn {
namespace act_neon {
namespace {
#include "common/simd/arm_neon.h"
#include "kernels/act/coeffs.inc"
#include "kernels/act/x86_act.h"
}  // namespace
}  // namespace act_neon

void act_f32__neon(int act, float* y, int64_t n) { act_neon::act_run(act, y, n); }

}  // namespace slimnn
