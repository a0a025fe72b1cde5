// aarch64 UDOT (FEAT_DotProd): the q4 W4A8 dynamic kernel.
//
// Codes stay unsigned (0..15) and the activations are u8, so UDOT takes both as they are (no sign trick):
// a 16-byte quarter of a step, `and 0x0F`, is columns 4q..4q+3 x k0..3 and `>> 4` the same columns x k4..7
// (formats/q4.h), each one UDOT operand against 4 activation bytes picked by lane (vdotq_laneq_u32; one
// 16-byte activation load serves two 8-k steps). The zero point is removed per group in int32 (q4gemm.h).
// Learned from ggml's ggml-cpu/arch/arm quants.c ggml_vec_dot_q4_0_q8_0 (nibbles split with vandq_u8 /
// vshrq_n_u8, then vdotq_s32; ggml shifts codes by - 8 to use SDOT where we keep them unsigned for UDOT)
// and KleidiAI's kai_matmul_clamp_f32_qai8dxp1x4_qsi4c32p4x4_1x4_neon_dotprod (lane-indexed dot products over a
// 16-byte activation block).
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"  // Q8Epilogue, named by the shared aarch64_common.h

namespace slimnn {
namespace q4_dotprod {
namespace {

#include "kernels/qgemm/aarch64_common.h"
#include "kernels/q4gemm/aarch64_q4_common.h"

// One 8-k step for MR rows: activation bytes k0..3 in lane L, k4..7 in lane L + 1 of a16[m].
template <int L, int MR>
inline void udot_step(const uint8_t* w, const uint8x16_t (&a16)[MR], uint32x4_t (&acc)[MR][4]) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int q = 0; q < 4; ++q) {
    const uint8x16_t v = vld1q_u8(w + 16 * q);
    const uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
    for (int m = 0; m < MR; ++m) {
      acc[m][q] = vdotq_laneq_u32(acc[m][q], lo, a16[m], L);
      acc[m][q] = vdotq_laneq_u32(acc[m][q], hi, a16[m], L + 1);
    }
  }
}

template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t k8_0, int64_t k8_1,
                      int32x4_t (&d)[MR][4]) {
  uint32x4_t acc[MR][4] = {};
  int64_t k8 = k8_0;
  for (; k8 + 2 <= k8_1; k8 += 2) {
    uint8x16_t a16[MR];
    for (int m = 0; m < MR; ++m) a16[m] = vld1q_u8(a + m * lda + k8 * 8);
    udot_step<0, MR>(w + k8 * 64, a16, acc);
    udot_step<2, MR>(w + k8 * 64 + 64, a16, acc);
  }
  if (k8 < k8_1) {
    uint8x16_t a16[MR];
    for (int m = 0; m < MR; ++m) a16[m] = vcombine_u8(vld1_u8(a + m * lda + k8 * 8), vdup_n_u8(0));
    udot_step<0, MR>(w + k8 * 64, a16, acc);
  }
  for (int m = 0; m < MR; ++m)
    for (int q = 0; q < 4; ++q) d[m][q] = vreinterpretq_s32_u32(acc[m][q]);
}

}  // namespace
}  // namespace q4_dotprod

SLIMNN_ARM_DYN_ENTRY(qgemm_q4_u8_4x16__dotprod, q4_dotprod, uint8_t, Q4Epilogue, q4_dyn<R>)
SLIMNN_ARM_Q4_DOT_ENTRY(qgemm_q4_u8_4x16__dotprod_dot, q4_dotprod)

}  // namespace slimnn
