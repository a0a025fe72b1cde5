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

void conv_dw_f32_3x3__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_fixed<3>(a, ox0, ox1); }
void conv_dw_f32_5x5__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_fixed<5>(a, ox0, ox1); }
void conv_dw_f32_general__neon(const DwArgs& a, int64_t ox0, int64_t ox1) { conv_neon::dw_general(a, ox0, ox1); }

bool conv_minmax__neon(const float* x, int64_t n, float* mn, float* mx) {
  using namespace conv_neon;
  V lo = vset1(*mn), hi = vset1(*mx);
  const V inf = vset1(std::numeric_limits<float>::infinity());
  uint32x4_t ok = vdupq_n_u32(~0u);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const V v = vload(x + i);
    ok = vandq_u32(ok, vcltq_f32(vabsq_f32(v), inf));  // false for an infinity and for NaN
    lo = vmin(lo, v);
    hi = vmax(hi, v);
  }
  if (vminvq_u32(ok) == 0) return false;
  float l[4], h[4];
  vst1q_f32(l, lo);
  vst1q_f32(h, hi);
  float a = l[0], b = h[0];
  for (int j = 1; j < 4; ++j) a = l[j] < a ? l[j] : a, b = h[j] > b ? h[j] : b;
  for (; i < n; ++i) {
    if (!(std::fabs(x[i]) <= std::numeric_limits<float>::max())) return false;
    a = x[i] < a ? x[i] : a;
    b = x[i] > b ? x[i] : b;
  }
  *mn = a, *mx = b;
  return true;
}

void conv_quantize_u8__neon(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q) {
  const float32x4_t vinv = vdupq_n_f32(inv);
  const int32x4_t vzp = vdupq_n_s32(zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    int16x4_t h[4];
    for (int j = 0; j < 4; ++j)
      h[j] = vqmovn_s32(vaddq_s32(vcvtnq_s32_f32(vmulq_f32(vld1q_f32(x + i + 4 * j), vinv)), vzp));
    const uint8x8_t b01 = vqmovun_s16(vcombine_s16(h[0], h[1]));
    const uint8x8_t b23 = vqmovun_s16(vcombine_s16(h[2], h[3]));
    vst1q_u8(q + i, vcombine_u8(b01, b23));
  }
  for (; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(std::nearbyint(x[i] * inv)) + zp;
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

}  // namespace slimnn
