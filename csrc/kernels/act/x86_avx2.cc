// AVX2 + FMA activations: x86_act.h on 8 lanes (common/simd/x86_avx2.h).
#include <immintrin.h>

#include "kernels/act/act.h"

namespace slimnn {
namespace act_avx2 {
namespace {
#include "common/simd/x86_avx2.h"
#include "kernels/act/coeffs.inc"
#include "kernels/act/x86_act.h"
}  // namespace
}  // namespace act_avx2

void act_f32__avx2(int act, float* y, int64_t n) { act_avx2::act_run(act, y, n); }

}  // namespace slimnn
