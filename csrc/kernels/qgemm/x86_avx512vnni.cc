// AVX-512 VNNI: W8A8 dynamic kernel (vpdpbusd, u8 activations x s8 weights) and row quantization.
#include <immintrin.h>

#include <cfloat>
#include <cstring>

#include "formats/q4.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace avx512vnni {
namespace {

#include "kernels/qgemm/x86_avx512_common.h"

template <int MR, int NP>
inline void dot_block(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int64_t k4_0, int64_t k4_1,
                      __m512i (&acc)[MR][NP]) {
  for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
    __m512i wv[NP];
    for (int p = 0; p < NP; ++p) wv[p] = _mm512_loadu_si512(w + p * 16 * kp + k4 * 64);
    for (int m = 0; m < MR; ++m) {
      const __m512i av = bcast4(a + m * lda + k4 * 4);
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_dpbusd_epi32(acc[m][p], av, wv[p]);
    }
  }
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  const int64_t k4n = kp / 4;
  if (e.n_groups == 1) {
    __m512i acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_si512();
    dot_block<MR, NP>(a, lda, w, kp, 0, k4n, acc);
    for (int p = 0; p < NP; ++p) {
      const __mmask16 mask = col_mask(e.ncols, p);
      if (!mask) continue;
      const __m512i cs = _mm512_maskz_loadu_epi32(mask, e.colsum + p * 16);
      const __m512 sw = _mm512_maskz_loadu_ps(mask, e.scales + p * 16);
      const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mask, e.bias + p * 16) : _mm512_setzero_ps();
      for (int m = 0; m < MR; ++m) {
        const __m512i exact = _mm512_sub_epi32(acc[m][p], _mm512_mullo_epi32(_mm512_set1_epi32(e.a_zp[m]), cs));
        const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(e.a_scale[m]));
        _mm512_mask_storeu_ps(e.y + m * e.ldy + p * 16, mask, _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), s, bias));
      }
    }
    return;
  }
  __m512 facc[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) facc[m][p] = _mm512_setzero_ps();
  for (int64_t g = 0; g < e.n_groups; ++g) {
    __m512i acc[MR][NP];
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_si512();
    const int64_t k4_0 = g * e.group_k4, k4_1 = k4_0 + e.group_k4 < k4n ? k4_0 + e.group_k4 : k4n;
    dot_block<MR, NP>(a, lda, w, kp, k4_0, k4_1, acc);
    for (int p = 0; p < NP; ++p) {
      const __m512 sg = _mm512_loadu_ps(e.scales + g * e.np + p * 16);
      for (int m = 0; m < MR; ++m) facc[m][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][p]), sg, facc[m][p]);
    }
  }
  for (int p = 0; p < NP; ++p) {
    const __mmask16 mask = col_mask(e.ncols, p);
    if (!mask) continue;
    const __m512 comp = _mm512_maskz_loadu_ps(mask, e.comp + p * 16);
    const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mask, e.bias + p * 16) : _mm512_setzero_ps();
    for (int m = 0; m < MR; ++m) {
      const __m512 r = _mm512_fnmadd_ps(_mm512_set1_ps(float(e.a_zp[m])), comp, facc[m][p]);
      _mm512_mask_storeu_ps(e.y + m * e.ldy + p * 16, mask, _mm512_fmadd_ps(r, _mm512_set1_ps(e.a_scale[m]), bias));
    }
  }
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, int64_t ldo) {
  __m512i acc[MR][NP];
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_setzero_si512();
  dot_block<MR, NP>(a, lda, w, kp, 0, kp / 4, acc);
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) _mm512_storeu_si512(out + m * ldo + p * 16, acc[m][p]);
}

template <int MR>
void dyn_np(int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  switch (panels) {
    case 1: return dyn<MR, 1>(a, lda, w, kp, e);
    case 2: return dyn<MR, 2>(a, lda, w, kp, e);
    case 3: return dyn<MR, 3>(a, lda, w, kp, e);
    default: return dyn<MR, 4>(a, lda, w, kp, e);
  }
}

template <int MR>
void dot_np(int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, int64_t ldo) {
  switch (panels) {
    case 1: return dot<MR, 1>(a, lda, w, kp, out, ldo);
    case 2: return dot<MR, 2>(a, lda, w, kp, out, ldo);
    case 3: return dot<MR, 3>(a, lda, w, kp, out, ldo);
    default: return dot<MR, 4>(a, lda, w, kp, out, ldo);
  }
}

}  // namespace
}  // namespace avx512vnni

void qgemm_q8_u8_4x64__avx512vnni(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                  const Q8Epilogue& e) {
  using namespace avx512vnni;
  switch (mr) {
    case 1: return dyn_np<1>(panels, a, lda, w, kp, e);
    case 2: return dyn_np<2>(panels, a, lda, w, kp, e);
    case 3: return dyn_np<3>(panels, a, lda, w, kp, e);
    default: return dyn_np<4>(panels, a, lda, w, kp, e);
  }
}

// GEMV: one row, up to 8 panels (128 columns): eight independent accumulators hide vpdpbusd's latency.
void qgemm_q8_u8_1x128__avx512vnni(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                   const Q8Epilogue& e) {
  using namespace avx512vnni;
  for (int m = 0; m < mr; ++m) {
    Q8Epilogue em = e;
    em.y = e.y + m * e.ldy;
    em.a_scale = e.a_scale + m;
    em.a_zp = e.a_zp + m;
    const uint8_t* am = a + m * lda;
    switch (panels) {
      case 1: dyn<1, 1>(am, lda, w, kp, em); break;
      case 2: dyn<1, 2>(am, lda, w, kp, em); break;
      case 3: dyn<1, 3>(am, lda, w, kp, em); break;
      case 4: dyn<1, 4>(am, lda, w, kp, em); break;
      case 5: dyn<1, 5>(am, lda, w, kp, em); break;
      case 6: dyn<1, 6>(am, lda, w, kp, em); break;
      case 7: dyn<1, 7>(am, lda, w, kp, em); break;
      default: dyn<1, 8>(am, lda, w, kp, em); break;
    }
  }
}

void qgemm_q8_u8_1x128__avx512vnni_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w,
                                       int64_t kp, int32_t* out, int64_t ldo) {
  using namespace avx512vnni;
  for (int m = 0; m < mr; ++m)
    for (int p0 = 0; p0 < panels; p0 += 4)
      dot_np<1>(panels - p0 < 4 ? panels - p0 : 4, a + m * lda, lda, w + int64_t(p0) * 16 * kp, kp,
                out + m * ldo + p0 * 16, ldo);
}

void qgemm_q8_u8_4x64__avx512vnni_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                                      int32_t* out, int64_t ldo) {
  using namespace avx512vnni;
  switch (mr) {
    case 1: return dot_np<1>(panels, a, lda, w, kp, out, ldo);
    case 2: return dot_np<2>(panels, a, lda, w, kp, out, ldo);
    case 3: return dot_np<3>(panels, a, lda, w, kp, out, ldo);
    default: return dot_np<4>(panels, a, lda, w, kp, out, ldo);
  }
}

bool quantize_row_u8__avx512(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

// The quantizer needs AVX-512 F/BW only: the VNNI kernels share the AVX-512 one (x86_avx512.cc).
bool quantize_row_u8__avx512vnni(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  return quantize_row_u8__avx512(x, k, kp, q, scale, zp);
}

}  // namespace slimnn
