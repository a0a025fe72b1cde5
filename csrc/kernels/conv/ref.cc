// Portable conv kernels: plain C++, compiled without ISA flags. The fallback on every CPU and the model the
// ISA kernels are tested against (quantized bytes must match exactly; depthwise floats within rounding).
#include <cmath>
#include <limits>

#include "kernels/conv/conv.h"

namespace slimnn {
namespace portable {

// The names dw_impl.inc uses (as common/simd/x86_*.h spell them), on one scalar lane.
using V = float;
constexpr int W = 1;
inline V vload(const float* p) { return *p; }
inline void vstore(float* p, V v) { *p = v; }
inline V vfma(V a, V b, V acc) { return a * b + acc; }
inline V vfms(V a, V b, V c) { return a * b - c; }
inline V vadd(V a, V b) { return a + b; }
inline V vmul(V a, V b) { return a * b; }
inline V vdiv(V a, V b) { return a / b; }
inline V vload_u8(const uint8_t* p) { return float(*p); }
inline V vset1(float f) { return f; }
using M = bool;
inline M vgt(V a, V b) { return a > b; }  // false when either is NaN, as _CMP_GT_OQ
inline V vselect(M m, V a, V b) { return m ? a : b; }

#include "kernels/conv/dw_impl.inc"

}  // namespace portable

void conv_dw_f32_3x3__portable(const DwArgs& a, int64_t ox0, int64_t ox1) { portable::dw_fixed_entry<3>(a, ox0, ox1); }
void conv_dw_f32_5x5__portable(const DwArgs& a, int64_t ox0, int64_t ox1) { portable::dw_fixed_entry<5>(a, ox0, ox1); }
void conv_dw_f32_general__portable(const DwArgs& a, int64_t ox0, int64_t ox1) { portable::dw_general_entry(a, ox0, ox1); }
void conv_clamp__portable(float* y, int64_t n, float lo, float hi) { portable::clamp_row(y, n, lo, hi); }
void conv_hardswish__portable(float* y, int64_t n) { portable::hardswish_row(y, n); }
bool conv_requant_u8__portable(const float* x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi, uint8_t* q) {
  return portable::requant_row(x, n, inv, zp, lo, hi, q);
}

bool conv_minmax__portable(const float* x, int64_t n, float* mn, float* mx) {
  float lo = *mn, hi = *mx;
  for (int64_t i = 0; i < n; ++i) {
    if (!(std::fabs(x[i]) <= std::numeric_limits<float>::max())) return false;
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo, *mx = hi;
  return true;
}

void conv_quantize_u8__portable(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q) {
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(std::nearbyint(x[i] * inv)) + zp;
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
}

}  // namespace slimnn
