// Portable reference: the same tile algorithm (flash_tile.h) on one-lane "vectors" of plain floats, compiled
// without ISA flags. The fallback on every CPU and the model the ISA kernels are tested against. vfma is a
// multiply then an add (no fused rounding: baseline x86-64 has no FMA), and exp scales by std::ldexp.
#include <cmath>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace portable {
namespace {

using V = float;
constexpr int W = 1;

inline V vzero() { return 0.0f; }
inline V vset1(float f) { return f; }
inline V vload(const float* p) { return *p; }
inline V vload_n(const float* p, int n) { return n >= 1 ? *p : 0.0f; }
inline void vstore_n(float* p, V x, int n) {
  if (n >= 1) *p = x;
}
inline V vfma(V a, V b, V c) { return a * b + c; }
inline V vmul(V a, V b) { return a * b; }
inline V vadd(V a, V b) { return a + b; }
inline V vsub(V a, V b) { return a - b; }
inline V vmax(V a, V b) { return a > b ? a : b; }
inline V vfill_from(V x, int n, float f) { return n >= 1 ? x : f; }
inline float hmax(V x) { return x; }
inline float hsum(V x) { return x; }

inline V vexp(V x) {
  x = -104.0f > x ? -104.0f : x;  // (a > b ? a : b): a NaN x is kept
  x = 89.0f < x ? 89.0f : x;
  if (x != x) return x;
  const float n = std::nearbyint(x * 1.44269504088896341f);
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606820309417232e-6f;
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return std::ldexp(p, int(n));
}

#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace portable

void attention_f32_flash__portable(const AttnTile& t) { portable::flash_tile(t); }
void attention_exp_f32__portable(const float* x, float* y, int64_t n) { portable::exp_array(x, y, n); }

}  // namespace slimnn
