// AVX2 + FMA: the fp32 dot-product micro-kernels of the lowrank family (x86_dot.h) on 8 lanes. The tail
// (k % 8) uses vmaskmovps, which reads nothing past k (masked lanes neither load nor fault).
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "common/simd/x86_avx2.h"
#include "kernels/lowrank/x86_dot.h"

}  // namespace
}  // namespace avx2

void lowrank_f32_1x8__avx2(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                           const float* bias, float* y, int64_t ldy) {
  avx2::gemv_1x8(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);
}

void lowrank_f32_3x4__avx2(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                           const float* bias, float* y, int64_t ldy) {
  avx2::tile_x4(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);
}

}  // namespace slimnn
