// aarch64 Advanced SIMD (the Arm floor): q4 W4A8 dynamic kernel and weight-only kernel.
//
// One de-interleaving vld4q_u8 of a 64-byte step (formats/q4.h) gives four vectors "16 columns, byte j":
// the low nibbles are k = j and the high nibbles k = 4 + j. The dyn kernel widens codes (0..15) and u8
// activations to u16 and accumulates with vmlal_laneq_u16 (products <= 3825, sums exact in u32); the
// weight-only kernel subtracts the zero points in int8, widens to fp32 and uses vfmaq_laneq_f32. The
// column-vector form follows XNNPACK's NEON qc4w GEMMs (src/qd8-f32-qc4w-gemm, neon-mlal-lane variants).
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"  // Q8Epilogue, named by the shared aarch64_common.h

namespace slimnn {
namespace q4_neon {
namespace {

#include "kernels/qgemm/aarch64_common.h"
#include "kernels/q4gemm/aarch64_q4_common.h"

// Raw u8 x u4 dot products of rows 0..MR-1 over 8-k steps [k8_0, k8_1).
template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t k8_0, int64_t k8_1,
                      int32x4_t (&d)[MR][4]) {
  uint32x4_t acc[MR][4] = {};
  const uint8x16_t m4 = vdupq_n_u8(0x0F);
  for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
    const uint8x16x4_t b = vld4q_u8(w + k8 * 64);
    uint16x8_t c16[8][2];  // [k][columns 0..7 | 8..15]
    for (int j = 0; j < 4; ++j) {
      const uint8x16_t lo = vandq_u8(b.val[j], m4), hi = vshrq_n_u8(b.val[j], 4);
      c16[j][0] = vmovl_u8(vget_low_u8(lo));
      c16[j][1] = vmovl_high_u8(lo);
      c16[4 + j][0] = vmovl_u8(vget_low_u8(hi));
      c16[4 + j][1] = vmovl_high_u8(hi);
    }
    for (int m = 0; m < MR; ++m) {
      const uint16x8_t a8 = vmovl_u8(vld1_u8(a + m * lda + k8 * 8));
      mlal_k<0>(acc[m], c16, a8);
      mlal_k<1>(acc[m], c16, a8);
      mlal_k<2>(acc[m], c16, a8);
      mlal_k<3>(acc[m], c16, a8);
      mlal_k<4>(acc[m], c16, a8);
      mlal_k<5>(acc[m], c16, a8);
      mlal_k<6>(acc[m], c16, a8);
      mlal_k<7>(acc[m], c16, a8);
    }
  }
  for (int m = 0; m < MR; ++m)
    for (int q = 0; q < 4; ++q) d[m][q] = vreinterpretq_s32_u32(acc[m][q]);
}

template <int MR>
void wo(int mr, const float* x, int64_t ldx, const uint8_t* w, int64_t kp, const Q4Epilogue& e) {
  float32x4_t out[MR][4];
  zero_f<MR>(out);
  for_groups(e.n_groups, e.group_k8, kp / 8, [&](int64_t g, int64_t k8_0, int64_t k8_1) {
    const int8x16_t z16 = e.zeros ? vreinterpretq_s8_u8(vld1q_u8(e.zeros + g * 16)) : vdupq_n_s8(8);
    float32x4_t acc[MR][4];
    zero_f<MR>(acc);
    for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
      const uint8x16x4_t b = vld4q_u8(w + k8 * 64);
      for (int m = 0; m < MR; ++m) {
        const float32x4_t xl = vld1q_f32(x + m * ldx + k8 * 8), xh = vld1q_f32(x + m * ldx + k8 * 8 + 4);
        q4_fma_k<0>(acc[m], b.val[0], z16, xl, xh);
        q4_fma_k<1>(acc[m], b.val[1], z16, xl, xh);
        q4_fma_k<2>(acc[m], b.val[2], z16, xl, xh);
        q4_fma_k<3>(acc[m], b.val[3], z16, xl, xh);
      }
    }
    for (int q = 0; q < 4; ++q) {
      const float32x4_t sg = load_scales4(e.scales, e.scale_dtype, g * 16 + 4 * q);
      for (int m = 0; m < MR; ++m) out[m][q] = vfmaq_f32(out[m][q], acc[m][q], sg);
    }
  });
  wo_store<MR>(e, mr, out);
}

}  // namespace
}  // namespace q4_neon

SLIMNN_ARM_DYN_ENTRY(qgemm_q4_u8_4x16__neon, q4_neon, uint8_t, Q4Epilogue, q4_dyn<R>)
SLIMNN_ARM_Q4_DOT_ENTRY(qgemm_q4_u8_4x16__neon_dot, q4_neon)

void qgemm_q4_f32_4x16__neon(int mr, int panels, const float* x, int64_t ldx, const uint8_t* w, int64_t kp,
                             const Q4Epilogue& e) {
  (void)panels;
  q4_neon::by_rows(mr, [&](auto r) { q4_neon::wo<decltype(r)::value>(mr, x, ldx, w, kp, e); });
}

namespace q4_fz_neon {
namespace {
#include "common/simd/arm_neon.h"
#include "kernels/q4gemm/fz_term.h"
}  // namespace
}  // namespace q4_fz_neon

SLIMNN_Q4_FZ_ENTRIES(neon, q4_fz_neon)

}  // namespace slimnn
