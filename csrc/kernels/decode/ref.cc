// The portable torch-order SiLU (decode.h): the model the vector kernels match bit for bit (std::fma where
// they use fused multiply-adds, the same operation order).
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/decode/decode.h"

namespace slimnn {
namespace {
#include "kernels/decode/torch_silu.inc"

float pow2i(int q) {
  const uint32_t u = uint32_t(q + 127) << 23;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float torch_vec_exp(float d) {
  if (std::isnan(d)) return d;
  if (d < kTsLow) return 0.0f;
  if (kTsHigh < d) return std::numeric_limits<float>::infinity();
  const float qf = std::nearbyint(d * kTsLog2e);
  const int q = int(qf);
  float s = std::fma(qf, -kTsLn2Hi, d);
  s = std::fma(qf, -kTsLn2Lo, s);
  float u = kTsP[0];
  for (int i = 1; i < 6; ++i) u = std::fma(u, s, kTsP[i]);
  u = 1.0f + std::fma(s * s, u, s);
  const int h = q >> 1;
  return u * pow2i(h) * pow2i(q - h);
}

}  // namespace

void torch_silu_f32__portable(float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = y[i] / (1.0f + torch_vec_exp(-y[i]));
}

}  // namespace slimnn
