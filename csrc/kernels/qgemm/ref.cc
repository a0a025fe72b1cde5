// Portable reference kernels: plain C++, compiled without ISA flags. They are the fallback on every CPU and
// the model the ISA kernels are tested against (integer results must match exactly).
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/qgemm/qgemm.h"

namespace slimnn {

bool quantize_row_u8__portable(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    if (!(std::fabs(x[i]) <= std::numeric_limits<float>::max())) return false;
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  // Written as two quotients so that a row spanning [-FLT_MAX, FLT_MAX] does not overflow; a (near-)zero
  // row gets scale 1 (its values all quantize to the zero point).
  float s = mx / 255.0f - mn / 255.0f;
  if (!(s >= std::numeric_limits<float>::min())) s = 1.0f;
  const float inv = 1.0f / s;
  float zf = std::nearbyint(-mn * inv);
  zf = zf < 0.0f ? 0.0f : (zf > 255.0f ? 255.0f : zf);
  const int32_t z = static_cast<int32_t>(zf);
  for (int64_t i = 0; i < k; ++i) {
    int32_t v = static_cast<int32_t>(std::nearbyint(x[i] * inv)) + z;
    q[i] = static_cast<uint8_t>(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
  for (int64_t i = k; i < kp; ++i) q[i] = 0;
  *scale = s;
  *zp = z;
  return true;
}

void qgemm_q8_u8_1x16__portable_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                    int32_t* out, int64_t ldo) {
  for (int m = 0; m < mr; ++m)
    for (int p = 0; p < panels; ++p)
      for (int c = 0; c < 16; ++c) {
        const int8_t* wp = w + int64_t(p) * 16 * kp;
        int32_t acc = 0;
        for (int64_t k = 0; k < kp; ++k) acc += int32_t(a[m * lda + k]) * int32_t(wp[(k / 4) * 64 + c * 4 + k % 4]);
        out[m * ldo + p * 16 + c] = acc;
      }
}

void qgemm_q8_u8_1x16__portable(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                const Q8Epilogue& e) {
  const int64_t gk = e.group_k4 * 4;
  for (int m = 0; m < mr; ++m) {
    const uint8_t* am = a + m * lda;
    for (int p = 0; p < panels; ++p) {
      const int8_t* wp = w + int64_t(p) * 16 * kp;
      for (int c = 0; c < 16; ++c) {
        const int64_t col = p * 16 + c;
        if (col >= e.ncols) break;
        float acc = 0.0f;
        int32_t exact = 0;
        for (int64_t g = 0; g < e.n_groups; ++g) {
          int32_t d = 0;
          const int64_t k1 = (g + 1) * gk < kp ? (g + 1) * gk : kp;
          for (int64_t k = g * gk; k < k1; ++k) d += int32_t(am[k]) * int32_t(wp[(k / 4) * 64 + c * 4 + k % 4]);
          // Wrapping arithmetic, like the SIMD kernels' vpmulld/vpsubd: exact for any valid blob (the bound
          // on K keeps it in range) and defined for a corrupt column sum that only the full check catches.
          if (e.n_groups == 1)
            exact = int32_t(uint32_t(d) - uint32_t(e.a_zp[m]) * uint32_t(e.colsum[col]));
          else
            acc += static_cast<float>(d) * e.scales[g * e.np + col];
        }
        float r = e.n_groups == 1 ? static_cast<float>(exact) * e.scales[col] : acc - float(e.a_zp[m]) * e.comp[col];
        r *= e.a_scale[m];
        if (e.bias) r += e.bias[col];
        e.y[m * e.ldy + col] = r;
      }
    }
  }
}

void qgemm_q8_f32_1x16__portable(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                                 const Q8Epilogue& e) {
  const int64_t gk = e.group_k4 * 4;
  for (int m = 0; m < mr; ++m) {
    const float* xm = x + m * ldx;
    for (int p = 0; p < panels; ++p) {
      const int8_t* wp = w + int64_t(p) * 16 * kp;
      for (int c = 0; c < 16; ++c) {
        const int64_t col = p * 16 + c;
        if (col >= e.ncols) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < e.n_groups; ++g) {
          float d = 0.0f;
          const int64_t k1 = (g + 1) * gk < kp ? (g + 1) * gk : kp;
          for (int64_t k = g * gk; k < k1; ++k) d += xm[k] * float(wp[(k / 4) * 64 + c * 4 + k % 4]);
          acc += d * e.scales[g * e.np + col];
        }
        if (e.bias) acc += e.bias[col];
        e.y[m * e.ldy + col] = acc;
      }
    }
  }
}

}  // namespace slimnn
