// NEON: depthwise kernels (dw_impl.inc on 4 channels per vector, common/simd/arm_neon.h) and the activation
// quantizer of the dyn path. The quantizer gives the portable bytes: x * inv rounded once to fp32, then to
// the nearest integer with ties to even (fcvtns), plus zp, saturated to [0, 255] by two saturating narrows
// (int32 -> int16 -> uint8), the same clamp as the scalar code.
#include <arm_neon.h>

#include <cmath>
#include <limits>

#include "kernels/conv/conv.h"

namespace slimnn {
namespace conv_neon {
namespace {

#include "common/simd/arm_neon.h"

#include "kernels/conv/dw_impl.inc"

}  // namespace
}  // namespace conv_neon

// Depthwise entries (kernels.inc): the general path first, then the two fixed-size ones.
void conv_dw_f32_3x3__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_fixed_entry<3>(a, ox0, ox1); }
void conv_dw_f32_5x5__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_fixed_entry<5>(a, ox0, ox1); }
void conv_dw_f32_general__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_general_entry(a, ox0, ox1); }
void conv_clamp__neon(float* y, int64_t n, float lo, float hi) { conv_neon::clamp_row(y, n, lo, hi); }
void conv_hardswish__neon(float* y, int64_t n) { conv_neon::hardswish_row(y, n); }
// The scalar loop of dw_impl.inc (the bytes of every other ISA).
bool conv_requant_u8__neon(const float* x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi, uint8_t* q) {
  return conv_neon::requant_row(x, n, inv, zp, lo, hi, q);
}

bool conv_minmax__portable(const float* x, int64_t n, float* mn, float* mx);
void conv_quantize_u8__portable(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q);

// Vectors of 4 while they last, lanes folded with the x86 operand rule, then the portable loop over the tail
// (it folds into *mn / *mx and checks finiteness itself).
bool conv_minmax__neon(const float* x, int64_t n, float* mn, float* mx) {
  using namespace conv_neon;
  V lo = vset1(*mn), hi = vset1(*mx);
  const V inf = vset1(std::numeric_limits<float>::infinity());
  uint32x4_t ok = vdupq_n_u32(~0u);
  const int64_t n4 = n / 4 * 4;
  for (int64_t i = 0; i < n4; i += 4) {
    const V v = vload(x + i);
    ok = vandq_u32(ok, vcltq_f32(vabsq_f32(v), inf));  // false for an infinity and for NaN
    lo = vmin(lo, v);
    hi = vmax(hi, v);
  }
  if (vminvq_u32(ok) == 0) return false;
  lo = vmin(lo, vextq_f32(lo, lo, 2));
  hi = vmax(hi, vextq_f32(hi, hi, 2));
  *mn = vgetq_lane_f32(vmin(lo, vextq_f32(lo, lo, 1)), 0);
  *mx = vgetq_lane_f32(vmax(hi, vextq_f32(hi, hi, 1)), 0);
  return conv_minmax__portable(x + n4, n - n4, mn, mx);
}

void conv_quantize_u8__neon(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q) {
  // Four values: nearest-even(x * inv) + zp, saturated to int16 (then to uint8 below).
  auto step = [vinv = vdupq_n_f32(inv), vzp = vdupq_n_s32(zp)](const float* p) {
    return vqmovn_s32(vaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(p), vinv)), vzp));
  };
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; i += 16) {
    const uint8x8_t b01 = vqmovun_s16(vcombine_s16(step(x + i), step(x + i + 4)));
    const uint8x8_t b23 = vqmovun_s16(vcombine_s16(step(x + i + 8), step(x + i + 12)));
    vst1q_u8(q + i, vcombine_u8(b01, b23));
  }
  conv_quantize_u8__portable(x + n16, n - n16, inv, zp, q + n16);  // the tail (< 16 values)
}

}  // namespace slimnn
