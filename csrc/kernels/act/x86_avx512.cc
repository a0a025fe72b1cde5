// AVX-512 activations: x86_act.h on 16 lanes (common/simd/x86_avx512.h).
#include <immintrin.h>

#include "kernels/act/act.h"

namespace slimnn {
namespace act_avx512 {
namespace {
#include "common/simd/x86_avx512.h"
#include "kernels/act/coeffs.inc"
#include "kernels/act/x86_act.h"
}  // namespace
}  // namespace act_avx512

void act_f32__avx512(int act, float* y, int64_t n) { act_avx512::act_run(act, y, n); }

}  // namespace slimnn
