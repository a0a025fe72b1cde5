// aarch64 SDOT (FEAT_DotProd): the W8A8 dynamic kernel.
//
// A q8 step's 16-byte quarter q (columns 4q..4q+3 x 4 k, formats/q8.h) is exactly one SDOT operand: each
// 32-bit lane gets a 4-byte dot product, so no shuffle is needed. SDOT multiplies s8 by s8, and the
// activations are u8 with a zero point: they enter as a - 128 (one eor with 0x80), and the lost
// 128 * colsum is added back in int32 with the blob's column sums, the same correction as the zero point
// (sum_k a_k w_k = sum_k (a_k - 128) w_k + 128 * colsum), so the integers stay exact. Learned from ggml's
// ggml-cpu/arch/arm/quants.c (ggml_vec_dot_q8_0_q8_0 with vdotq_s32 over 16-byte blocks) and KleidiAI's
// kai_matmul_clamp_f32_qai8dxp1x4_qsi8cxp4x4_1x4_neon_dotprod (activations loaded 16 bytes at a time, one vdotq_laneq_s32 per 4-byte
// lane, so one load feeds 4 steps of K).
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {

bool quantize_row_u8__neon(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

namespace dotprod {
namespace {

#include "kernels/qgemm/aarch64_common.h"

template <int T, int MR>
inline void sdot_step(const int8_t* w, const int8x16_t (&a16)[MR], int32x4_t (&acc)[MR][4]) {
  const int8x16_t w0 = vld1q_s8(w), w1 = vld1q_s8(w + 16), w2 = vld1q_s8(w + 32), w3 = vld1q_s8(w + 48);
  for (int m = 0; m < MR; ++m) {
    acc[m][0] = vdotq_laneq_s32(acc[m][0], w0, a16[m], T);
    acc[m][1] = vdotq_laneq_s32(acc[m][1], w1, a16[m], T);
    acc[m][2] = vdotq_laneq_s32(acc[m][2], w2, a16[m], T);
    acc[m][3] = vdotq_laneq_s32(acc[m][3], w3, a16[m], T);
  }
}

// sum_k (a - 128) * w of rows 0..MR-1 over steps [k4_0, k4_1).
template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const int8_t* w, int64_t k4_0, int64_t k4_1,
                      int32x4_t (&acc)[MR][4]) {
  const uint8x16_t flip = vdupq_n_u8(0x80);
  int64_t k4 = k4_0;
  for (; k4 + 4 <= k4_1; k4 += 4) {
    int8x16_t a16[MR];
    for (int m = 0; m < MR; ++m) a16[m] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(a + m * lda + k4 * 4), flip));
    sdot_step<0, MR>(w + k4 * 64, a16, acc);
    sdot_step<1, MR>(w + k4 * 64 + 64, a16, acc);
    sdot_step<2, MR>(w + k4 * 64 + 128, a16, acc);
    sdot_step<3, MR>(w + k4 * 64 + 192, a16, acc);
  }
  for (; k4 < k4_1; ++k4) {
    int8x16_t a16[MR];
    for (int m = 0; m < MR; ++m)
      a16[m] = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(bcast_u8x4(a + m * lda + k4 * 4)), flip));
    sdot_step<0, MR>(w + k4 * 64, a16, acc);
  }
}

}  // namespace
}  // namespace dotprod

SLIMNN_ARM_DYN_ENTRY(qgemm_q8_u8_4x16__dotprod, dotprod, int8_t, Q8Epilogue, q8_dyn_off<R, 128>)

// The hook has no column sums: it takes them from the weights (SDOT with ones) to undo the - 128.
void qgemm_q8_u8_4x16__dotprod_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                   int32_t* out, int64_t ldo) {
  (void)panels;
  int32x4_t ws[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
  const int8x16_t ones = vdupq_n_s8(1);
  for (int64_t k4 = 0; k4 < kp / 4; ++k4)
    for (int q = 0; q < 4; ++q) ws[q] = vdotq_s32(ws[q], vld1q_s8(w + k4 * 64 + 16 * q), ones);
  for (int m = 0; m < mr; ++m) {
    int32x4_t d[1][4];
    dotprod::zero_acc<1>(d);
    dotprod::dot_block<1>(a + m * lda, lda, w, 0, kp / 4, d);
    for (int q = 0; q < 4; ++q) vst1q_s32(out + m * ldo + 4 * q, vmlaq_s32(d[0][q], ws[q], vdupq_n_s32(128)));
  }
}

// The dotprod kernels quantize rows with the Advanced SIMD quantizer (same bits as the portable one).
bool quantize_row_u8__dotprod(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  return quantize_row_u8__neon(x, k, kp, q, scale, zp);
}

}  // namespace slimnn
