// AVX-512 activations: 16 lanes, the formulas and operation order of act.cc's portable kernel (bit-identical
// results); the tail is a masked load/store of the same code.
#include <immintrin.h>

#include "kernels/act/act.h"

namespace slimnn {
namespace act_avx512 {
namespace {
#include "kernels/act/coeffs.inc"

inline __m512 c(float v) { return _mm512_set1_ps(v); }
inline __m512 vabs(__m512 x) { return _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(c(-0.0f)), _mm512_castps_si512(x))); }

inline __m512 exp_neg_raw(__m512 v) {
  const __m512 vc = _mm512_max_ps(v, c(kExpMin));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(vc, c(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, c(-kLn2Hi), vc);
  r = _mm512_fmadd_ps(n, c(-kLn2Lo), r);
  __m512 p = c(kExpP[4]);
  p = _mm512_fmadd_ps(p, r, c(kExpP[3]));
  p = _mm512_fmadd_ps(p, r, c(kExpP[2]));
  p = _mm512_fmadd_ps(p, r, c(kExpP[1]));
  p = _mm512_fmadd_ps(p, r, c(kExpP[0]));
  const __m512 r2 = _mm512_mul_ps(r, r);
  const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(r2, p, r), c(1.0f));
  return _mm512_scalef_ps(e, n);  // e * 2^n, correctly rounded like the portable path's multiply
}

inline __m512 gelu(__m512 x) {
  const __m512 q = _mm512_mul_ps(x, x);
  const __m512 qlo = _mm512_fmsub_ps(x, x, q);
  const __m512 v = _mm512_mul_ps(q, c(-0.5f)), vlo = _mm512_mul_ps(qlo, c(0.5f));
  const __mmask16 keep = _mm512_cmp_ps_mask(q, c(-2.0f * kExpMin), _CMP_NGT_UQ);  // not (q > 174)
  const __m512 ev = exp_neg_raw(v);
  const __m512 e = _mm512_maskz_fnmadd_ps(keep, ev, vlo, ev);  // exp(v - vlo) ~ ev (1 - vlo); 0 past the flush
  const __m512 z = _mm512_mul_ps(vabs(x), c(kInvSqrt2));
  const __m512 t = _mm512_div_ps(c(1.0f), _mm512_fmadd_ps(c(kErfcP), z, c(1.0f)));
  __m512 cq = c(kErfcQHalf[9]);
  for (int i = 8; i >= 0; --i) cq = _mm512_fmadd_ps(cq, t, c(kErfcQHalf[i]));
  const __m512 h = _mm512_mul_ps(e, _mm512_mul_ps(t, cq));
  const __mmask16 pos = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
  return _mm512_mul_ps(x, _mm512_mask_sub_ps(h, pos, c(1.0f), h));
}

inline __m512 x_sigmoid(__m512 x, __m512 w) {
  const __m512 aw = vabs(w);
  __m512 e = exp_neg_raw(_mm512_sub_ps(_mm512_setzero_ps(), aw));
  e = _mm512_mask_mov_ps(e, _mm512_cmp_ps_mask(aw, c(-kExpMin), _CMP_GT_OQ), _mm512_setzero_ps());
  const __mmask16 pos = _mm512_cmp_ps_mask(w, _mm512_setzero_ps(), _CMP_GE_OQ);
  const __m512 num = _mm512_mask_blend_ps(pos, _mm512_mul_ps(x, e), x);
  return _mm512_div_ps(num, _mm512_add_ps(c(1.0f), e));
}

inline __m512 gelu_tanh(__m512 x) {
  const __m512 inner = _mm512_fmadd_ps(c(kGeluTanhK3), _mm512_mul_ps(x, x), c(kGeluTanhK1));
  return x_sigmoid(x, _mm512_mul_ps(x, inner));
}

template <int kAct>
inline __m512 apply(__m512 x) {
  if (kAct == int(Activation::kRelu)) return _mm512_max_ps(_mm512_setzero_ps(), x);
  if (kAct == int(Activation::kGelu)) return gelu(x);
  if (kAct == int(Activation::kGeluTanh)) return gelu_tanh(x);
  return x_sigmoid(x, x);
}

template <int kAct>
void run(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, apply<kAct>(_mm512_loadu_ps(y + i)));
  if (i < n) {
    const __mmask16 m = __mmask16((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m, apply<kAct>(_mm512_maskz_loadu_ps(m, y + i)));
  }
}

}  // namespace
}  // namespace act_avx512

void act_f32__avx512(int act, float* y, int64_t n) {
  using namespace act_avx512;
  switch (static_cast<Activation>(act)) {
    case Activation::kRelu: return run<int(Activation::kRelu)>(y, n);
    case Activation::kGelu: return run<int(Activation::kGelu)>(y, n);
    case Activation::kGeluTanh: return run<int(Activation::kGeluTanh)>(y, n);
    case Activation::kSilu: return run<int(Activation::kSilu)>(y, n);
    default: return;
  }
}

}  // namespace slimnn
