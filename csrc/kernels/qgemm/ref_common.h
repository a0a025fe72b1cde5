// The loops the portable q8 (qgemm/ref.cc) and q4 (q4gemm/ref.cc) kernels share: every valid output of a
// micro-kernel call, the group sums along K and the two epilogues. A format supplies only its per-group dot
// product and its scales (as lambdas, inlined). Portable code: include only from ref.cc files (no ISA flags).
#pragma once
#include <cstdint>

namespace slimnn {
namespace qref {

// y[m][col] = out(m, p, c, col) for rows m < mr and columns col = p * 16 + c < e.ncols of `panels` panels.
template <typename Epilogue, typename Out>
inline void for_each_output(int mr, int panels, const Epilogue& e, Out&& out) {
  for (int m = 0; m < mr; ++m)
    for (int p = 0; p < panels; ++p)
      for (int c = 0; c < 16; ++c) {
        const int64_t col = p * 16 + c;
        if (col >= e.ncols) break;
        e.y[m * e.ldy + col] = out(m, p, c, col);
      }
}

// Group g of size gk along K: [g * gk, min((g + 1) * gk, kp)).
inline int64_t group_end(int64_t g, int64_t gk, int64_t kp) { return (g + 1) * gk < kp ? (g + 1) * gk : kp; }

// Weight-only: sum_g scale(g) * dot(g, k0, k1) (+ bias[col]), dot the fp32 sum over the group.
template <typename Epilogue, typename Dot, typename Scale>
inline float wo_out(const Epilogue& e, int64_t col, int64_t gk, int64_t kp, Dot&& dot, Scale&& scale) {
  float acc = 0.0f;
  for (int64_t g = 0; g < e.n_groups; ++g) acc += dot(g, g * gk, group_end(g, gk, kp)) * scale(g);
  if (e.bias) acc += e.bias[col];
  return acc;
}

// Dynamic (W8A8 / W4A8) for row m: dot(g, k0, k1) is the exact int32 group integer. One group: the activation
// zero-point term is removed in int32, (dot - zp * colsum) * scale(0); several: sum_g dot_g * scale(g) -
// zp * comp, in float. Then * a_scale[m] (+ bias[col]). Wrapping int32 arithmetic, like the SIMD kernels'
// vpmulld / vpsubd: exact for any valid blob (the bound on K keeps it in range) and defined for a corrupt
// column sum that only the full check catches.
template <typename Epilogue, typename Dot, typename Scale>
inline float dyn_out(const Epilogue& e, int m, int64_t col, int64_t gk, int64_t kp, Dot&& dot, Scale&& scale) {
  float r;
  if (e.n_groups == 1) {
    const int32_t exact = int32_t(uint32_t(dot(0, 0, group_end(0, gk, kp))) - uint32_t(e.a_zp[m]) * uint32_t(e.colsum[col]));
    r = static_cast<float>(exact) * scale(0);
  } else {
    float acc = 0.0f;
    for (int64_t g = 0; g < e.n_groups; ++g) acc += static_cast<float>(dot(g, g * gk, group_end(g, gk, kp))) * scale(g);
    r = acc - float(e.a_zp[m]) * e.comp[col];
  }
  r *= e.a_scale[m];
  if (e.bias) r += e.bias[col];
  return r;
}

}  // namespace qref
}  // namespace slimnn
