// aarch64 FEAT_I8MM: the q4 W4A8 dynamic kernel for M >= 2 with UMMLA (u8 [2 rows x 8 k] x u8 [2 columns x 8
// k]^T -> int32 [2 x 2]). One 8-k step's quarter q holds columns 4q..4q+3 with k0..3 in the low nibbles and
// k4..7 in the high ones (formats/q4.h): zipping the 32-bit lanes of `and 0x0F` and `>> 4` gives the
// [2 columns x 8 k] operands directly, so the blob needs no Arm-specific repacking; two activation rows'
// 8-byte steps pair up with vcombine. M = 1 takes the UDOT kernel (aarch64_dotprod.cc). Learned from ggml's
// ggml-cpu/arch/arm quants.c (the nrc == 2 vmmlaq_s32 paths of ggml_vec_dot_q4_0_q8_0: vzip1q_s64 row pairing,
// the [r0c0 r0c1 r1c0 r1c1] result unscrambled after the loop) and KleidiAI's
// kai_matmul_clamp_f32_qsi8d32p4x8_qsi4c32p4x8_16x4_neon_i8mm (4 rows x 8 k LHS blocks).
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"  // Q8Epilogue, named by the shared aarch64_common.h

namespace slimnn {

void qgemm_q4_u8_4x16__dotprod(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&);
void qgemm_q4_u8_4x16__dotprod_dot(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&,
                                   int32_t*, int64_t);

namespace q4_i8mm {
namespace {

#include "kernels/qgemm/aarch64_common.h"
#include "kernels/q4gemm/aarch64_q4_common.h"

// acc[p][j]: [r0c0 r0c1 r1c0 r1c1] of rows 2p, 2p+1 and columns 2j, 2j+1 over 8-k steps [k8_0, k8_1).
inline void mmla_block(const uint8_t* const (&rows)[4], const uint8_t* w, int64_t k8_0, int64_t k8_1,
                       uint32x4_t (&acc)[2][8]) {
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
    const uint8x16_t a01 = vcombine_u8(vld1_u8(rows[0] + k8 * 8), vld1_u8(rows[1] + k8 * 8));
    const uint8x16_t a23 = vcombine_u8(vld1_u8(rows[2] + k8 * 8), vld1_u8(rows[3] + k8 * 8));
    for (int q = 0; q < 4; ++q) {
      const uint8x16_t v = vld1q_u8(w + k8 * 64 + 16 * q);
      const uint32x4_t lo = vreinterpretq_u32_u8(vandq_u8(v, m4)), hi = vreinterpretq_u32_u8(vshrq_n_u8(v, 4));
      const uint8x16_t b01 = vreinterpretq_u8_u32(vzip1q_u32(lo, hi));
      const uint8x16_t b23 = vreinterpretq_u8_u32(vzip2q_u32(lo, hi));
      acc[0][2 * q] = vmmlaq_u32(acc[0][2 * q], a01, b01);
      acc[0][2 * q + 1] = vmmlaq_u32(acc[0][2 * q + 1], a01, b23);
      acc[1][2 * q] = vmmlaq_u32(acc[1][2 * q], a23, b01);
      acc[1][2 * q + 1] = vmmlaq_u32(acc[1][2 * q + 1], a23, b23);
    }
  }
}

// Raw dot products of rows 0..3 (rows past mr repeat the last real one) over [k8_0, k8_1).
inline void dot4(const uint8_t* a, int mr, int64_t lda, const uint8_t* w, int64_t k8_0, int64_t k8_1,
                 int32x4_t (&d)[4][4]) {
  const uint8_t* rows[4];
  rows4(a, mr, lda, rows);
  uint32x4_t acc[2][8] = {};
  mmla_block(rows, w, k8_0, k8_1, acc);
  int32x4_t sacc[2][8];  // UMMLA's u32 sums, bits unchanged, as the s32 lanes the shared unscramble moves
  for (int p = 0; p < 2; ++p)
    for (int j = 0; j < 8; ++j) sacc[p][j] = vreinterpretq_s32_u32(acc[p][j]);
  unscramble<2>(sacc, d);
}

}  // namespace
}  // namespace q4_i8mm

void qgemm_q4_u8_4x16__i8mm(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                            const Q4Epilogue& e) {
  (void)panels;  // NP == 1
  q4_i8mm::q4_dyn<4>(e, mr, kp, [&](int64_t s0, int64_t s1, int32x4_t(&d)[4][4]) { q4_i8mm::dot4(a, mr, lda, w, s0, s1, d); });
}

void qgemm_q4_u8_4x16__i8mm_dot(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                                const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  (void)panels;
  q4_i8mm::q4_dot_hook<4>(mr, a, lda, kp, e, out, ldo,
                          [&](const uint8_t* ar, int rows, int64_t s0, int64_t s1, int32x4_t(&d)[4][4]) {
                            q4_i8mm::dot4(ar, rows, lda, w, s0, s1, d);
                          });
}

// M = 1 on an i8mm CPU: the UDOT kernel (every i8mm CPU has dotprod; the two are built together).
void qgemm_q4_u8_1x16__i8mm(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                            const Q4Epilogue& e) {
  qgemm_q4_u8_4x16__dotprod(mr, panels, a, lda, w, kp, e);
}

void qgemm_q4_u8_1x16__i8mm_dot(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                                const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  qgemm_q4_u8_4x16__dotprod_dot(mr, panels, a, lda, w, kp, e, out, ldo);
}

}  // namespace slimnn
