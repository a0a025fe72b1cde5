// The portable wogemm kernels: scalar dequantization and a 4x16 fp32 micro-kernel (the fallback, and the
// twin the ISA kernels are tested beside).
#include <algorithm>
#include <cstdint>

#include "kernels/act/act.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {
namespace portable_wo {
namespace {

constexpr int kMR = 4, kNR = 16;

void ukernel(int mr, int ncols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
             const float* bias) {
  float acc[kMR][kNR] = {};
  for (int64_t kk = 0; kk < kc; ++kk)
    for (int r = 0; r < kMR; ++r)
      for (int j = 0; j < kNR; ++j) acc[r][j] += a[kk * kMR + r] * b[kk * kNR + j];
  for (int r = 0; r < mr; ++r)
    for (int j = 0; j < ncols; ++j) {
      float v = acc[r][j];
      if (accumulate) v += c[r * ldc + j];
      if (bias) v += bias[j];
      c[r * ldc + j] = v;
    }
}

void dequant_q8(const Q8View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < panels; ++p) {
    const int8_t* src = w.w + (p0 + p) * 16 * w.kp;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t k = k0 + kk, g = w.n_groups == 1 ? 0 : k / w.group_size;
      for (int c = 0; c < 16; ++c)
        out[p * kc * kNR + kk * kNR + c] =
            float(src[(k / 4) * 64 + c * 4 + k % 4]) * w.scales[g * w.np + (p0 + p) * 16 + c];
    }
  }
}

void dequant_q4(const Q4View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < panels; ++p) {
    const uint8_t* src = w.w + (p0 + p) * 8 * w.kp;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t k = k0 + kk, g = w.n_groups == 1 ? 0 : k / w.group_size;
      const int64_t sz = q4_sz_index(g, (p0 + p) * 16, w.n_groups);
      const int j = int(k % 8);
      for (int c = 0; c < 16; ++c) {
        const uint8_t byte = src[(k / 8) * 64 + c * 4 + j % 4];
        const int u = j < 4 ? (byte & 15) : (byte >> 4);
        const int z = w.zeros ? w.zeros[sz + c] : 8;
        out[p * kc * kNR + kk * kNR + c] = float(u - z) * q4_scale_to_f32(w.scales, w.scale_dtype, sz + c);
      }
    }
  }
}

#include "kernels/wogemm/panel_impl.h"

}  // namespace
}  // namespace portable_wo

#define SLIMNN_WO_ISA portable_wo
#define SLIMNN_WO_IF_portable(kind, name) SLIMNN_WO_##kind(name)
#include "kernels/wogemm/entries.h"
#undef SLIMNN_WO_ISA

}  // namespace slimnn
