// aarch64 FEAT_I8MM: W8A8 dynamic kernels with mixed-sign dot products (no - 128 trick needed).
//  - 1x16 (GEMV): SUDOT, s8 weights x u8 activation lanes (vsudotq_laneq_s32), one 16-byte activation load
//    per 4 steps of K, as in the dotprod kernel.
//  - 4x16: USMMLA, u8 [2 rows x 8 k] x s8 [2 columns x 8 k]^T -> int32 [2 x 2] per instruction, twice the
//    multiply-adds of a dot product per instruction. Operands are built in registers from the unchanged q8
//    blob: two consecutive 4-k steps hold, per 16-byte quarter, columns 4q..4q+3 x k0..3 and x k4..7, and
//    zipping their 32-bit lanes gives the [2 columns x 8 k] operands (vzip1q_s32 / vzip2q_s32); activation
//    rows pair up with vcombine. Learned from ggml's ggml-cpu/arch/arm quants.c (the nrc == 2 paths of
//    ggml_vec_dot_q4_1_q8_1 and friends: vzip1q_s64 pairs the 8-byte halves of two rows into one MMLA
//    operand, and the [r0c0 r0c1 r1c0 r1c1] result is unscrambled afterwards) and KleidiAI's
//    kai_matmul_clamp_f32_qai8dxp4x8_qsi8cxp4x8_16x4_neon_i8mm (4 rows x 8 k activation blocks, "4x8" packing,
//    which here is derived at load time instead of stored, so the blob stays the same on every CPU).
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {

bool quantize_row_u8__neon(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

namespace i8mm {
namespace {

#include "kernels/qgemm/aarch64_common.h"

template <int T>
inline void sudot_step(const int8_t* w, uint8x16_t a16, int32x4_t (&acc)[4]) {
  for (int q = 0; q < 4; ++q) acc[q] = vsudotq_laneq_s32(acc[q], vld1q_s8(w + 16 * q), a16, T);
}

// Raw u8 x s8 dot products of one row over steps [k4_0, k4_1).
inline void dot_row(const uint8_t* a, const int8_t* w, int64_t k4_0, int64_t k4_1, int32x4_t (&acc)[4]) {
  int64_t k4 = k4_0;
  for (; k4 + 4 <= k4_1; k4 += 4) {
    const uint8x16_t a16 = vld1q_u8(a + k4 * 4);
    sudot_step<0>(w + k4 * 64, a16, acc);
    sudot_step<1>(w + k4 * 64 + 64, a16, acc);
    sudot_step<2>(w + k4 * 64 + 128, a16, acc);
    sudot_step<3>(w + k4 * 64 + 192, a16, acc);
  }
  for (; k4 < k4_1; ++k4) sudot_step<0>(w + k4 * 64, vreinterpretq_u8_u32(bcast_u8x4(a + k4 * 4)), acc);
}

// 8 bytes of a row from k, or its 4 bytes and zeros when only one 4-k step is left (weights there are the
// zero vector, so the activation half only must stay inside the row).
inline uint8x8_t row8(const uint8_t* p, bool half) {
  if (!half) return vld1_u8(p);
  uint32_t v;
  std::memcpy(&v, p, 4);
  return vreinterpret_u8_u32(vset_lane_u32(v, vdup_n_u32(0), 0));
}

// USMMLA over steps [k4_0, k4_1) for row pairs (0,1) and (2,3) (MP pairs): acc[p][j] holds the 2 x 2 block
// [r0c0 r0c1 r1c0 r1c1] of rows 2p, 2p+1 and columns 2j, 2j+1.
template <int MP>
inline void mmla_block(const uint8_t* const (&rows)[2 * MP], const int8_t* w, int64_t k4_0, int64_t k4_1,
                       int32x4_t (&acc)[MP][8]) {
  const int8x16_t zero = vdupq_n_s8(0);
  for (int64_t k4 = k4_0; k4 < k4_1; k4 += 2) {
    const bool half = k4 + 1 >= k4_1;
    uint8x16_t ap[MP];
    for (int p = 0; p < MP; ++p)
      ap[p] = vcombine_u8(row8(rows[2 * p] + k4 * 4, half), row8(rows[2 * p + 1] + k4 * 4, half));
    for (int q = 0; q < 4; ++q) {
      const int32x4_t lo = vreinterpretq_s32_s8(vld1q_s8(w + k4 * 64 + 16 * q));
      const int32x4_t hi = vreinterpretq_s32_s8(half ? zero : vld1q_s8(w + k4 * 64 + 64 + 16 * q));
      const int8x16_t b01 = vreinterpretq_s8_s32(vzip1q_s32(lo, hi));  // columns 4q, 4q+1 x k0..7
      const int8x16_t b23 = vreinterpretq_s8_s32(vzip2q_s32(lo, hi));  // columns 4q+2, 4q+3
      for (int p = 0; p < MP; ++p) {
        acc[p][2 * q] = vusmmlaq_s32(acc[p][2 * q], ap[p], b01);
        acc[p][2 * q + 1] = vusmmlaq_s32(acc[p][2 * q + 1], ap[p], b23);
      }
    }
  }
}

// The raw dot products of rows 0..3 (rows past mr repeat the last real one) over steps [k4_0, k4_1), added to d.
inline void dot4(const uint8_t* a, int mr, int64_t lda, const int8_t* w, int64_t k4_0, int64_t k4_1,
                 int32x4_t (&d)[4][4]) {
  const uint8_t* rows[4];
  rows4(a, mr, lda, rows);
  int32x4_t acc[2][8];
  for (int p = 0; p < 2; ++p)
    for (int j = 0; j < 8; ++j) acc[p][j] = vdupq_n_s32(0);
  mmla_block<2>(rows, w, k4_0, k4_1, acc);
  int32x4_t t[4][4];
  unscramble<2>(acc, t);
  for (int m = 0; m < 4; ++m)
    for (int q = 0; q < 4; ++q) d[m][q] = vaddq_s32(d[m][q], t[m][q]);
}

}  // namespace
}  // namespace i8mm

void qgemm_q8_u8_1x16__i8mm(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                            const Q8Epilogue& e) {
  (void)panels;  // NP == 1
  for (int m = 0; m < mr; ++m) {
    Q8Epilogue em = e;
    em.a_scale = e.a_scale + m;
    em.a_zp = e.a_zp + m;
    em.y = e.y + m * e.ldy;
    i8mm::q8_dyn<1>(em, 1, kp, 0,
                    [&](int64_t s0, int64_t s1, int32x4_t(&d)[1][4]) { i8mm::dot_row(a + m * lda, w, s0, s1, d[0]); });
  }
}

void qgemm_q8_u8_1x16__i8mm_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                int32_t* out, int64_t ldo) {
  (void)panels;
  for (int m = 0; m < mr; ++m) {
    int32x4_t d[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
    i8mm::dot_row(a + m * lda, w, 0, kp / 4, d);
    for (int q = 0; q < 4; ++q) vst1q_s32(out + m * ldo + 4 * q, d[q]);
  }
}

void qgemm_q8_u8_4x16__i8mm(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                            const Q8Epilogue& e) {
  (void)panels;  // NP == 1
  i8mm::q8_dyn<4>(e, mr, kp, 0,
                  [&](int64_t s0, int64_t s1, int32x4_t(&d)[4][4]) { i8mm::dot4(a, mr, lda, w, s0, s1, d); });
}

void qgemm_q8_u8_4x16__i8mm_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                int32_t* out, int64_t ldo) {
  (void)panels;
  int32x4_t d[4][4];
  i8mm::zero_acc<4>(d);
  i8mm::dot4(a, mr, lda, w, 0, kp / 4, d);
  for (int m = 0; m < mr; ++m)
    for (int q = 0; q < 4; ++q) vst1q_s32(out + m * ldo + 4 * q, d[m][q]);
}

bool quantize_row_u8__i8mm(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  return quantize_row_u8__neon(x, k, kp, q, scale, zp);
}

}  // namespace slimnn
