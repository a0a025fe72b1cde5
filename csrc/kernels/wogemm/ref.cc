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

#include "kernels/wogemm/dequant_scalar.h"

#include "kernels/wogemm/panel_impl.h"

}  // namespace
}  // namespace portable_wo

#define SLIMNN_WO_ISA portable_wo
#define SLIMNN_WO_IF_portable(kind, name) SLIMNN_WO_##kind(name)
#include "kernels/wogemm/entries.h"
#undef SLIMNN_WO_ISA

}  // namespace slimnn
