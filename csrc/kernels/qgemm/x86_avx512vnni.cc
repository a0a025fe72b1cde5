// AVX-512 VNNI: W8A8 dynamic kernel (vpdpbusd, u8 activations x s8 weights) and row quantization.
#include <immintrin.h>

#include <cfloat>
#include <cstring>

#include "common/count_dispatch.h"
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

// The int32 dot products of each group, then fn(g, acc).
template <int MR, int NP, typename Fn>
inline void group_dots(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e, Fn&& fn) {
  auto block = [&](int64_t, int64_t k4_0, int64_t k4_1, __m512i (&acc)[MR][NP]) {
    dot_block<MR, NP>(a, lda, w, kp, k4_0, k4_1, acc);
  };
  for_each_group<__m512i[MR][NP]>(e.n_groups, e.group_k4, kp / 4, block, fn);
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  if (e.n_groups == 1) {
    group_dots<MR, NP>(a, lda, w, kp, e, [&](int64_t, const __m512i (&acc)[MR][NP]) {
      store_exact<MR, NP>(acc, e, [&](int p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, e.scales + p * 16); });
    });
    return;
  }
  __m512 facc[MR][NP];
  zero(facc);
  group_dots<MR, NP>(a, lda, w, kp, e, [&](int64_t g, const __m512i (&acc)[MR][NP]) {
    for (int p = 0; p < NP; ++p) {
      const __m512 sg = _mm512_loadu_ps(e.scales + g * e.np + p * 16);
      for (int m = 0; m < MR; ++m) facc[m][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][p]), sg, facc[m][p]);
    }
  });
  store_comp<MR, NP>(facc, e);
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, int64_t ldo) {
  __m512i acc[MR][NP];
  zero(acc);
  dot_block<MR, NP>(a, lda, w, kp, 0, kp / 4, acc);
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) _mm512_storeu_si512(out + m * ldo + p * 16, acc[m][p]);
}

}  // namespace
}  // namespace avx512vnni

// The GEMV entry (1x128: one row, up to 8 panels) keeps eight independent accumulators, which hides
// vpdpbusd's latency.
#define SLIMNN_X86_ISA avx512vnni
#define SLIMNN_X86_KERNELS "kernels/qgemm/kernels.inc"
#define SLIMNN_X86_IF_avx512vnni(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx512vnni
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

bool quantize_row_u8__avx512(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

// The quantizer needs AVX-512 F/BW only: the VNNI kernels share the AVX-512 one (x86_avx512.cc).
bool quantize_row_u8__avx512vnni(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  return quantize_row_u8__avx512(x, k, kp, q, scale, zp);
}

}  // namespace slimnn
