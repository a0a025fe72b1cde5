// Portable reference kernels: plain C++, compiled without ISA flags. They are the fallback on every CPU and
// the model the ISA kernels are tested against (integer results must match exactly).
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/ref_common.h"

namespace slimnn {
namespace {
#include "kernels/qgemm/u8_params.h"

// sum over k in [k0, k1) of x[k] * w[k] for column c of panel p, in Acc: int32 (exact) for u8 activations,
// float (in order) for fp32 ones.
template <typename Acc, typename T>
inline Acc group_dot(const T* x, const int8_t* w, int p, int64_t kp, int c, int64_t k0, int64_t k1) {
  const int8_t* wp = w + int64_t(p) * 16 * kp;
  Acc d = 0;
  for (int64_t k = k0; k < k1; ++k) d += Acc(x[k]) * Acc(wp[(k / 4) * 64 + c * 4 + k % 4]);
  return d;
}
}  // namespace

bool quantize_row_u8__portable(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t i = 0; i < k; ++i) {
    if (!(std::fabs(x[i]) <= std::numeric_limits<float>::max())) return false;
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  float s;
  int32_t z;
  u8_range_params(mn, mx, &s, &z);
  const float inv = 1.0f / s;
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
  qref::for_each_output(mr, panels, e, [&](int m, int p, int c, int64_t col) {
    auto dot = [&](int64_t, int64_t k0, int64_t k1) { return group_dot<int32_t>(a + m * lda, w, p, kp, c, k0, k1); };
    return qref::dyn_out(e, m, col, e.group_k4 * 4, kp, dot, [&](int64_t g) { return e.scales[g * e.np + col]; });
  });
}

void qgemm_q8_f32_1x16__portable(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                                 const Q8Epilogue& e) {
  qref::for_each_output(mr, panels, e, [&](int m, int p, int c, int64_t col) {
    auto dot = [&](int64_t, int64_t k0, int64_t k1) { return group_dot<float>(x + m * ldx, w, p, kp, c, k0, k1); };
    return qref::wo_out(e, col, e.group_k4 * 4, kp, dot, [&](int64_t g) { return e.scales[g * e.np + col]; });
  });
}

}  // namespace slimnn
