// The portable activation kernel (plain C++, compiled without ISA flags): the model the ISA kernels must
// match bit for bit (same formulas, same operation order, std::fma where they use fused multiply-adds).
#include "kernels/act/act.h"

#include <cmath>
#include <cstring>

namespace slimnn {
namespace act_portable {
namespace {
#include "kernels/act/coeffs.inc"

inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float vmax(float a, float b) { return a > b ? a : b; }  // x86 maxps semantics: b when either is NaN

// exp(v) for v <= 0 without the flush (see act.h): callers flush where v < kExpMin.
inline float exp_neg_raw(float v) {
  const float vc = vmax(v, kExpMin);
  const float n = std::nearbyint(vc * kLog2e);
  float r = std::fma(n, -kLn2Hi, vc);
  r = std::fma(n, -kLn2Lo, r);
  float p = kExpP[4];
  p = std::fma(p, r, kExpP[3]);
  p = std::fma(p, r, kExpP[2]);
  p = std::fma(p, r, kExpP[1]);
  p = std::fma(p, r, kExpP[0]);
  const float r2 = r * r;
  const float e = std::fma(r2, p, r) + 1.0f;
  return e * from_bits(uint32_t(int32_t(n) + 127) << 23);  // exact: the SIMD paths' scalef rounds the same
}

inline float gelu(float x) {
  const float q = x * x;
  const float qlo = std::fma(x, x, -q);
  const float v = q * -0.5f, vlo = qlo * 0.5f;  // -z^2 = v - vlo exactly
  float e = exp_neg_raw(v);
  e = std::fma(-e, vlo, e);
  e = q > -2.0f * kExpMin ? 0.0f : e;
  const float z = std::fabs(x) * kInvSqrt2;
  const float t = 1.0f / std::fma(kErfcP, z, 1.0f);
  float c = kErfcQHalf[9];
  for (int i = 8; i >= 0; --i) c = std::fma(c, t, kErfcQHalf[i]);
  const float h = e * (t * c);  // erfc(z) / 2
  return x * (x >= 0.0f ? 1.0f - h : h);
}

// x * sigmoid(w), from e = exp(-|w|).
inline float x_sigmoid(float x, float w) {
  const float aw = std::fabs(w);
  float e = exp_neg_raw(-aw);
  e = aw > -kExpMin ? 0.0f : e;
  const float num = w >= 0.0f ? x : x * e;
  return num / (1.0f + e);
}

inline float gelu_tanh(float x) {
  const float q = x * x;
  const float inner = std::fma(kGeluTanhK3, q, kGeluTanhK1);
  return x_sigmoid(x, x * inner);
}

}  // namespace
}  // namespace act_portable

void act_f32__portable(int act, float* y, int64_t n) {
  using namespace act_portable;
  switch (static_cast<Activation>(act)) {
    case Activation::kRelu:
      for (int64_t i = 0; i < n; ++i) y[i] = 0.0f > y[i] ? 0.0f : y[i];
      return;
    case Activation::kGelu:
      for (int64_t i = 0; i < n; ++i) y[i] = gelu(y[i]);
      return;
    case Activation::kGeluTanh:
      for (int64_t i = 0; i < n; ++i) y[i] = gelu_tanh(y[i]);
      return;
    case Activation::kSilu:
      for (int64_t i = 0; i < n; ++i) y[i] = x_sigmoid(y[i], y[i]);
      return;
    default:
      return;
  }
}

}  // namespace slimnn
