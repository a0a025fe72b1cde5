// Portable q4 kernels: plain C++, compiled without ISA flags. The fallback on every CPU and the model the
// ISA kernels are tested against (the per-group integers E_g must match exactly).
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/ref_common.h"

namespace slimnn {
namespace {

inline int32_t code(const uint8_t* panel, int c, int64_t k) {
  const uint8_t b = panel[(k / 8) * 64 + c * 4 + (k % 4)];
  return (k % 8) < 4 ? (b & 0x0F) : (b >> 4);
}

inline int32_t zero_of(const Q4Epilogue& e, int64_t g, int64_t col) { return e.zeros ? e.zeros[q4_sz_index(g, col, e.n_groups)] : 8; }
inline float scale_of(const Q4Epilogue& e, int64_t g, int64_t col) {
  return q4_scale_to_f32(e.scales, e.scale_dtype, q4_sz_index(g, col, e.n_groups));
}

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
          const int64_t k1 = qref::group_end(g, gk, kp);
          out[m * ldo + g * e.np + p * 16 + c] =
              group_dot(a + m * lda, wp, c, g * gk, k1, zero_of(e, g, p * 16 + c), e.a_sum[m * e.n_groups + g]);
        }
    }
}

void qgemm_q4_u8_1x16__portable(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                                const Q4Epilogue& e) {
  qref::for_each_output(mr, panels, e, [&](int m, int p, int c, int64_t col) {
    const uint8_t* wp = w + int64_t(p) * 8 * kp;
    auto dot = [&](int64_t g, int64_t k0, int64_t k1) {
      return group_dot(a + m * lda, wp, c, k0, k1, zero_of(e, g, col), e.a_sum[m * e.n_groups + g]);
    };
    return qref::dyn_out(e, m, col, e.group_k8 * 8, kp, dot, [&](int64_t g) { return scale_of(e, g, col); });
  });
}

void qgemm_q4_f32_1x16__portable(int mr, int panels, const float* x, int64_t ldx, const uint8_t* w, int64_t kp,
                                 const Q4Epilogue& e) {
  qref::for_each_output(mr, panels, e, [&](int m, int p, int c, int64_t col) {
    const float* xm = x + m * ldx;
    const uint8_t* wp = w + int64_t(p) * 8 * kp;
    auto dot = [&](int64_t g, int64_t k0, int64_t k1) {
      const int32_t z = zero_of(e, g, col);
      float d = 0.0f;
      for (int64_t k = k0; k < k1; ++k) d += xm[k] * float(code(wp, c, k) - z);
      return d;
    };
    return qref::wo_out(e, col, e.group_k8 * 8, kp, dot, [&](int64_t g) { return scale_of(e, g, col); });
  });
}

}  // namespace slimnn
