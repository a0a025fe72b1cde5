// AVX2 + FMA activations: 8 lanes, the formulas and operation order of act.cc's portable kernel
// (bit-identical results); the tail goes through an 8-float stack buffer.
#include <immintrin.h>

#include <cstring>

#include "kernels/act/act.h"

namespace slimnn {
namespace act_avx2 {
namespace {
#include "kernels/act/coeffs.inc"

inline __m256 c(float v) { return _mm256_set1_ps(v); }
inline __m256 vabs(__m256 x) { return _mm256_andnot_ps(c(-0.0f), x); }
// where(mask, a, b): a in lanes whose mask is set
inline __m256 where(__m256 mask, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, mask); }

inline __m256 exp_neg_raw(__m256 v) {
  const __m256 vc = _mm256_max_ps(v, c(kExpMin));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(vc, c(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fmadd_ps(n, c(-kLn2Hi), vc);
  r = _mm256_fmadd_ps(n, c(-kLn2Lo), r);
  __m256 p = c(kExpP[4]);
  p = _mm256_fmadd_ps(p, r, c(kExpP[3]));
  p = _mm256_fmadd_ps(p, r, c(kExpP[2]));
  p = _mm256_fmadd_ps(p, r, c(kExpP[1]));
  p = _mm256_fmadd_ps(p, r, c(kExpP[0]));
  const __m256 r2 = _mm256_mul_ps(r, r);
  const __m256 e = _mm256_add_ps(_mm256_fmadd_ps(r2, p, r), c(1.0f));
  const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

inline __m256 gelu(__m256 x) {
  const __m256 q = _mm256_mul_ps(x, x);
  const __m256 qlo = _mm256_fmsub_ps(x, x, q);
  const __m256 v = _mm256_mul_ps(q, c(-0.5f)), vlo = _mm256_mul_ps(qlo, c(0.5f));
  __m256 e = exp_neg_raw(v);
  e = _mm256_fnmadd_ps(e, vlo, e);
  e = where(_mm256_cmp_ps(q, c(-2.0f * kExpMin), _CMP_GT_OQ), _mm256_setzero_ps(), e);
  const __m256 z = _mm256_mul_ps(vabs(x), c(kInvSqrt2));
  const __m256 t = _mm256_div_ps(c(1.0f), _mm256_fmadd_ps(c(kErfcP), z, c(1.0f)));
  __m256 cq = c(kErfcQHalf[9]);
  for (int i = 8; i >= 0; --i) cq = _mm256_fmadd_ps(cq, t, c(kErfcQHalf[i]));
  const __m256 h = _mm256_mul_ps(e, _mm256_mul_ps(t, cq));
  const __m256 pos = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ);
  return _mm256_mul_ps(x, where(pos, _mm256_sub_ps(c(1.0f), h), h));
}

inline __m256 x_sigmoid(__m256 x, __m256 w) {
  const __m256 aw = vabs(w);
  __m256 e = exp_neg_raw(_mm256_sub_ps(_mm256_setzero_ps(), aw));
  e = where(_mm256_cmp_ps(aw, c(-kExpMin), _CMP_GT_OQ), _mm256_setzero_ps(), e);
  const __m256 pos = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_GE_OQ);
  const __m256 num = where(pos, x, _mm256_mul_ps(x, e));
  return _mm256_div_ps(num, _mm256_add_ps(c(1.0f), e));
}

inline __m256 gelu_tanh(__m256 x) {
  const __m256 inner = _mm256_fmadd_ps(c(kGeluTanhK3), _mm256_mul_ps(x, x), c(kGeluTanhK1));
  return x_sigmoid(x, _mm256_mul_ps(x, inner));
}

template <int kAct>
inline __m256 apply(__m256 x) {
  if (kAct == int(Activation::kRelu)) return _mm256_max_ps(_mm256_setzero_ps(), x);
  if (kAct == int(Activation::kGelu)) return gelu(x);
  if (kAct == int(Activation::kGeluTanh)) return gelu_tanh(x);
  return x_sigmoid(x, x);
}

template <int kAct>
void run(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, apply<kAct>(_mm256_loadu_ps(y + i)));
  if (i < n) {
    float buf[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    std::memcpy(buf, y + i, size_t(n - i) * sizeof(float));
    _mm256_storeu_ps(buf, apply<kAct>(_mm256_loadu_ps(buf)));
    std::memcpy(y + i, buf, size_t(n - i) * sizeof(float));
  }
}

}  // namespace
}  // namespace act_avx2

void act_f32__avx2(int act, float* y, int64_t n) {
  using namespace act_avx2;
  switch (static_cast<Activation>(act)) {
    case Activation::kRelu: return run<int(Activation::kRelu)>(y, n);
    case Activation::kGelu: return run<int(Activation::kGelu)>(y, n);
    case Activation::kGeluTanh: return run<int(Activation::kGeluTanh)>(y, n);
    case Activation::kSilu: return run<int(Activation::kSilu)>(y, n);
    default: return;
  }
}

}  // namespace slimnn
