// AVX-512 F: the fp32 dot-product micro-kernels of the lowrank family (x86_dot.h) on 16 lanes (both phases).
// The tail (k % 16) uses masked loads: nothing past k is read.
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "common/simd/x86_avx512.h"
#include "kernels/lowrank/x86_dot.h"

}  // namespace
}  // namespace avx512

void lowrank_f32_1x8__avx512(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                             const float* bias, float* y, int64_t ldy) {
  avx512::gemv_1x8(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);
}

void lowrank_f32_4x4__avx512(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                             const float* bias, float* y, int64_t ldy) {
  avx512::tile_x4(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);
}

}  // namespace slimnn
