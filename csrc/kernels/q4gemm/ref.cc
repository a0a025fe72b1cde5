// Portable q4 kernels: plain C++, compiled without ISA flags. The fallback on every CPU and the model the
// ISA kernels are tested against (the per-group integers E_g must match exactly).
#include "kernels/q4gemm/q4gemm.h"

namespace slimnn {
namespace {

inline int32_t code(const uint8_t* panel, int c, int64_t k) {
  const uint8_t b = panel[(k / 8) * 64 + c * 4 + (k % 4)];
  return (k % 8) < 4 ? (b & 0x0F) : (b >> 4);
}

inline int32_t zero_of(const Q4Epilogue& e, int64_t g, int64_t col) { return e.zeros ? e.zeros[q4_sz_index(g, col, e.n_groups)] : 8; }

// E_g for one row and one column: sum_{k in g} a_k * (u_k - z), computed as the kernels do (raw dot, then
// the zero-point term), which is the same integer.
inline int32_t group_dot(const uint8_t* am, const uint8_t* wp, int c, int64_t k0, int64_t k1, int32_t z,
                         int32_t asum) {
  int32_t d = 0;
  for (int64_t k = k0; k < k1; ++k) d += int32_t(am[k]) * code(wp, c, k);
  return d - z * asum;
}

}  // namespace

void qgemm_q4_u8_1x16__portable_dot(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                                    const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  const int64_t gk = e.group_k8 * 8;
  for (int m = 0; m < mr; ++m)
    for (int p = 0; p < panels; ++p) {
      const uint8_t* wp = w + int64_t(p) * 8 * kp;
      for (int c = 0; c < 16; ++c)
        for (int64_t g = 0; g < e.n_groups; ++g) {
          const int64_t k1 = (g + 1) * gk < kp ? (g + 1) * gk : kp;
          out[m * ldo + g * e.np + p * 16 + c] =
              group_dot(a + m * lda, wp, c, g * gk, k1, zero_of(e, g, p * 16 + c), e.a_sum[m * e.n_groups + g]);
        }
    }
}

void qgemm_q4_u8_1x16__portable(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                                const Q4Epilogue& e) {
  const int64_t gk = e.group_k8 * 8;
  for (int m = 0; m < mr; ++m) {
    const uint8_t* am = a + m * lda;
    for (int p = 0; p < panels; ++p) {
      const uint8_t* wp = w + int64_t(p) * 8 * kp;
      for (int c = 0; c < 16; ++c) {
        const int64_t col = p * 16 + c;
        if (col >= e.ncols) break;
        float r;
        if (e.n_groups == 1) {
          const int32_t d = group_dot(am, wp, c, 0, kp, zero_of(e, 0, col), e.a_sum[m]);
          r = static_cast<float>(d - e.a_zp[m] * e.colsum[col]) * q4_scale_to_f32(e.scales, e.scale_dtype, col);
        } else {
          float acc = 0.0f;
          for (int64_t g = 0; g < e.n_groups; ++g) {
            const int64_t k1 = (g + 1) * gk < kp ? (g + 1) * gk : kp;
            const int32_t d = group_dot(am, wp, c, g * gk, k1, zero_of(e, g, col), e.a_sum[m * e.n_groups + g]);
            acc += static_cast<float>(d) * q4_scale_to_f32(e.scales, e.scale_dtype, q4_sz_index(g, col, e.n_groups));
          }
          r = acc - float(e.a_zp[m]) * e.comp[col];
        }
        r *= e.a_scale[m];
        if (e.bias) r += e.bias[col];
        e.y[m * e.ldy + col] = r;
      }
    }
  }
}

void qgemm_q4_f32_1x16__portable(int mr, int panels, const float* x, int64_t ldx, const uint8_t* w, int64_t kp,
                                 const Q4Epilogue& e) {
  const int64_t gk = e.group_k8 * 8;
  for (int m = 0; m < mr; ++m) {
    const float* xm = x + m * ldx;
    for (int p = 0; p < panels; ++p) {
      const uint8_t* wp = w + int64_t(p) * 8 * kp;
      for (int c = 0; c < 16; ++c) {
        const int64_t col = p * 16 + c;
        if (col >= e.ncols) break;
        float acc = 0.0f;
        for (int64_t g = 0; g < e.n_groups; ++g) {
          const int32_t z = zero_of(e, g, col);
          float d = 0.0f;
          const int64_t k1 = (g + 1) * gk < kp ? (g + 1) * gk : kp;
          for (int64_t k = g * gk; k < k1; ++k) d += xm[k] * float(code(wp, c, k) - z);
          acc += d * q4_scale_to_f32(e.scales, e.scale_dtype, q4_sz_index(g, col, e.n_groups));
        }
        if (e.bias) acc += e.bias[col];
        e.y[m * e.ldy + col] = acc;
      }
    }
  }
}

}  // namespace slimnn
