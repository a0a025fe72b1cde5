// aarch64 Advanced SIMD (the Arm floor): W8A8 dynamic kernel, weight-only kernel, row quantization.
//
// No dot-product instruction here. The q8 step of 64 bytes (16 columns x 4 k, formats/q8.h) is read with
// one de-interleaving vld4q_s8, which gives four vectors "16 columns at k = j": the broadcast-activation,
// column-vector form of XNNPACK's NEON qc8w GEMMs (src/qs8-gemm/neon-mlal-lane: widen weights to int16,
// vmlal_lane_s16 with one activation lane; src/f32-qc8w-gemm: int8 weights widened to fp32 in registers and
// vfmaq_laneq_f32). Accumulators then hold whole columns and need no horizontal reduction. u8 activations
// (<= 255) and s8 weights widen to int16 exactly, and vmlal_s16 accumulates their products in int32.
#include <arm_neon.h>

#include <cfloat>
#include <cstring>
#include <type_traits>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace neon {
namespace {

#include "kernels/qgemm/aarch64_common.h"

// Weight-only step: lane J of xv (k = J) times the 16 int8 weights of that k, widened to fp32.
template <int J>
inline void fma_k(float32x4_t (&acc)[4], const int8x16_t wj, float32x4_t xv) {
  const int16x8_t lo = vmovl_s8(vget_low_s8(wj)), hi = vmovl_high_s8(wj);
  acc[0] = vfmaq_laneq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))), xv, J);
  acc[1] = vfmaq_laneq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(lo)), xv, J);
  acc[2] = vfmaq_laneq_f32(acc[2], vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))), xv, J);
  acc[3] = vfmaq_laneq_f32(acc[3], vcvtq_f32_s32(vmovl_high_s16(hi)), xv, J);
}

// Raw u8 x s8 dot products of rows 0..MR-1 over steps [k4_0, k4_1).
template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const int8_t* w, int64_t k4_0, int64_t k4_1,
                      int32x4_t (&acc)[MR][4]) {
  for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
    const int8x16x4_t wk = vld4q_s8(w + k4 * 64);
    int16x8_t w16[4][2];
    for (int j = 0; j < 4; ++j) {
      w16[j][0] = vmovl_s8(vget_low_s8(wk.val[j]));
      w16[j][1] = vmovl_high_s8(wk.val[j]);
    }
    for (int m = 0; m < MR; ++m) {
      const uint8x8_t a8 = vreinterpret_u8_u32(vget_low_u32(bcast_u8x4(a + m * lda + k4 * 4)));
      const int16x4_t a4 = vget_low_s16(vreinterpretq_s16_u16(vmovl_u8(a8)));
      mlal_k<0>(acc[m], w16, a4);
      mlal_k<1>(acc[m], w16, a4);
      mlal_k<2>(acc[m], w16, a4);
      mlal_k<3>(acc[m], w16, a4);
    }
  }
}

// Weight-only, MR rows: per group the float dot products, then y += scale_g * dot_g.
template <int MR>
void wo(int mr, const float* x, int64_t ldx, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  float32x4_t out[MR][4];
  zero_f<MR>(out);
  for_groups(e.n_groups, e.group_k4, kp / 4, [&](int64_t g, int64_t k4_0, int64_t k4_1) {
    float32x4_t acc[MR][4];
    zero_f<MR>(acc);
    for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
      const int8x16x4_t wk = vld4q_s8(w + k4 * 64);
      for (int m = 0; m < MR; ++m) {
        const float32x4_t xv = vld1q_f32(x + m * ldx + k4 * 4);
        fma_k<0>(acc[m], wk.val[0], xv);
        fma_k<1>(acc[m], wk.val[1], xv);
        fma_k<2>(acc[m], wk.val[2], xv);
        fma_k<3>(acc[m], wk.val[3], xv);
      }
    }
    for (int q = 0; q < 4; ++q) {
      const float32x4_t sg = vld1q_f32(e.scales + g * e.np + 4 * q);
      for (int m = 0; m < MR; ++m) out[m][q] = vfmaq_f32(out[m][q], acc[m][q], sg);
    }
  });
  wo_store<MR>(e, mr, out);
}

}  // namespace
}  // namespace neon

void qgemm_q8_u8_4x16__neon_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                int32_t* out, int64_t ldo) {
  (void)panels;
  for (int m = 0; m < mr; ++m) {
    int32x4_t d[1][4];
    neon::zero_acc<1>(d);
    neon::dot_block<1>(a + m * lda, lda, w, 0, kp / 4, d);
    for (int q = 0; q < 4; ++q) vst1q_s32(out + m * ldo + 4 * q, d[0][q]);
  }
}

SLIMNN_ARM_DYN_ENTRY(qgemm_q8_u8_4x16__neon, neon, int8_t, Q8Epilogue, q8_dyn_off<R, 0>)

void qgemm_q8_f32_4x16__neon(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                             const Q8Epilogue& e) {
  (void)panels;
  neon::by_rows(mr, [&](auto r) { neon::wo<decltype(r)::value>(mr, x, ldx, w, kp, e); });
}

// Same formula as quantize_row_u8__portable (ref.cc), 4 lanes at a time. The range's tail vector is
// zero-padded (vload_n), which changes nothing: the range always holds 0. vcvtnq_s32_f32 rounds to nearest,
// ties to even, as nearbyint does in the default rounding mode.
bool quantize_row_u8__neon(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  float32x4_t vmn = vdupq_n_f32(0.0f), vmx = vdupq_n_f32(0.0f);
  uint32x4_t bad = vdupq_n_u32(0);
  const float32x4_t fmax = vdupq_n_f32(FLT_MAX);
  for (int64_t j = 0; j < k; j += 4) {
    const float32x4_t v = neon::vload_n(x + j, k - j >= 4 ? 4 : int(k - j));
    bad = vorrq_u32(bad, vmvnq_u32(vcleq_f32(vabsq_f32(v), fmax)));  // NaN compares false: bad
    vmn = vminq_f32(vmn, v);
    vmx = vmaxq_f32(vmx, v);
  }
  if (vmaxvq_u32(bad) != 0) return false;
  const float mn = vminvq_f32(vmn), mx = vmaxvq_f32(vmx);
  int64_t i = 0;
  float s = mx / 255.0f - mn / 255.0f;
  if (!(s >= FLT_MIN)) s = 1.0f;
  const float inv = 1.0f / s;
  float zf = float(vcvtns_s32_f32(-mn * inv));
  zf = zf < 0.0f ? 0.0f : (zf > 255.0f ? 255.0f : zf);
  const int32_t z = int32_t(zf);
  const float32x4_t vinv = vdupq_n_f32(inv);
  const int32x4_t vz = vdupq_n_s32(z);
  for (i = 0; i + 8 <= k; i += 8) {
    const int32x4_t q0 = vaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + i), vinv)), vz);
    const int32x4_t q1 = vaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + i + 4), vinv)), vz);
    const uint16x8_t q16 = vcombine_u16(vqmovun_s32(q0), vqmovun_s32(q1));  // saturates below 0
    vst1_u8(q + i, vqmovn_u16(q16));                                        // and above 255
  }
  for (; i < k; ++i) {
    const int32_t v = vcvtns_s32_f32(x[i] * inv) + z;
    q[i] = uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
  for (; i < kp; ++i) q[i] = 0;
  *scale = s;
  *zp = z;
  return true;
}

}  // namespace slimnn
