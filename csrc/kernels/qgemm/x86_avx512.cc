// AVX-512 F/BW/VL/DQ without VNNI (Skylake-SP class): a W8A8 dynamic kernel on vpmaddwd (operands widened
// to int16, so the int32 pair sums are exact, unlike vpmaddubsw's saturating int16), the row quantizer, and
// the weight-only kernels (fp32 activations, int8 weights widened to fp32 in registers).
//
// Each 16-byte quarter of a 64-byte q8 step holds 4 columns x 4 k; widened to fp32 it is multiplied by the
// activations x[k..k+3] repeated in every 128-bit lane, so an accumulator keeps 4 columns x 4 partial sums
// and the 4 partials are folded once per group (reduce4x4 below).
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/count_dispatch.h"
#include "formats/q4.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "kernels/qgemm/x86_avx512_common.h"
#include "kernels/qgemm/u8_params.h"

template <int MR, int NP>
void wo(const float* x, int64_t ldx, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  __m512 out[MR][NP];
  zero(out);
  auto block = [&](int64_t, int64_t k4_0, int64_t k4_1, __m512 (&acc)[MR][NP][4]) {
    for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
      __m512 wf[NP][4];
      for (int p = 0; p < NP; ++p)
        for (int j = 0; j < 4; ++j)
          wf[p][j] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + p * 16 * kp + k4 * 64 + j * 16))));
      for (int m = 0; m < MR; ++m) {
        const __m512 xv = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + k4 * 4));
        for (int p = 0; p < NP; ++p)
          for (int j = 0; j < 4; ++j) acc[m][p][j] = _mm512_fmadd_ps(wf[p][j], xv, acc[m][p][j]);
      }
    }
  };
  for_each_group<__m512[MR][NP][4]>(e.n_groups, e.group_k4, kp / 4, block, [&](int64_t g, const __m512 (&acc)[MR][NP][4]) {
    add_group_wo<MR, NP>(out, acc, [&](int p) { return _mm512_loadu_ps(e.scales + g * e.np + p * 16); });
  });
  store_wo<MR, NP>(out, e);
}

// acc holds columns 0-7 and 8-15 as (k01, k23) int32 pairs; returns the 16 column totals in order.
inline __m512i fold_pairs(__m512i lo, __m512i hi) {
  const __m512i slo = _mm512_add_epi32(lo, _mm512_srli_epi64(lo, 32));
  const __m512i shi = _mm512_add_epi32(hi, _mm512_srli_epi64(hi, 32));
  const __m512i idx = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  return _mm512_permutex2var_epi32(slo, idx, shi);
}

template <int MR, int NP>
inline void dot_block(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int64_t k4_0, int64_t k4_1,
                      __m512i (&acc)[MR][NP][2]) {
  for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
    __m512i wv[NP][2];
    for (int p = 0; p < NP; ++p)
      for (int h = 0; h < 2; ++h)
        wv[p][h] = _mm512_cvtepi8_epi16(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + p * 16 * kp + k4 * 64 + h * 32)));
    for (int m = 0; m < MR; ++m) {
      int32_t v;
      std::memcpy(&v, a + m * lda + k4 * 4, 4);
      const __m512i av = _mm512_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(v)));
      for (int p = 0; p < NP; ++p)
        for (int h = 0; h < 2; ++h) acc[m][p][h] = _mm512_add_epi32(acc[m][p][h], _mm512_madd_epi16(av, wv[p][h]));
    }
  }
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  __m512 facc[MR][NP];
  __m512i exact[MR][NP];
  zero(facc);
  auto block = [&](int64_t, int64_t k4_0, int64_t k4_1, __m512i (&acc)[MR][NP][2]) {
    dot_block<MR, NP>(a, lda, w, kp, k4_0, k4_1, acc);
  };
  for_each_group<__m512i[MR][NP][2]>(e.n_groups, e.group_k4, kp / 4, block, [&](int64_t g, const __m512i (&acc)[MR][NP][2]) {
    for (int p = 0; p < NP; ++p) {
      const __m512 sg = _mm512_loadu_ps(e.scales + g * e.np + p * 16);
      for (int m = 0; m < MR; ++m) {
        const __m512i d = fold_pairs(acc[m][p][0], acc[m][p][1]);
        if (e.n_groups == 1)
          exact[m][p] = d;
        else
          facc[m][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), sg, facc[m][p]);
      }
    }
  });
  if (e.n_groups != 1) return store_comp<MR, NP>(facc, e);
  // Per channel: the zero-point term in int32, exactly; then scaled by the weights', then the row's scale.
  store_panels<MR, NP>(e, [&](int p, __mmask16 mask) {
    const __m512i cs = _mm512_maskz_loadu_epi32(mask, e.colsum + p * 16);
    const __m512 sw = _mm512_maskz_loadu_ps(mask, e.scales + p * 16);
    return [&, p, cs, sw](int m, __m512 bias) {
      const __m512i x = _mm512_sub_epi32(exact[m][p], _mm512_mullo_epi32(_mm512_set1_epi32(e.a_zp[m]), cs));
      return _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(x), sw), _mm512_set1_ps(e.a_scale[m]), bias);
    };
  });
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, int64_t ldo) {
  for (int m = 0; m < MR; ++m)
    for (int p = 0; p < NP; ++p) {
      __m512i acc[1][1][2];
      zero(acc);
      dot_block<1, 1>(a + m * lda, lda, w + int64_t(p) * 16 * kp, kp, 0, kp / 4, acc);
      _mm512_storeu_si512(out + m * ldo + p * 16, fold_pairs(acc[0][0][0], acc[0][0][1]));
    }
}

}  // namespace
}  // namespace avx512

#define SLIMNN_X86_ISA avx512
#define SLIMNN_X86_KERNELS "kernels/qgemm/kernels.inc"
#define SLIMNN_X86_IF_avx512(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx512
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

// Same formula as quantize_row_u8__portable (ref.cc), lane by lane.
bool quantize_row_u8__avx512(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  __m512 vmn = _mm512_setzero_ps(), vmx = _mm512_setzero_ps();
  const __m512 fmax = _mm512_set1_ps(FLT_MAX);
  __mmask16 bad = 0;
  for (int64_t i = 0; i < k; i += 16) {
    const __mmask16 mk = k - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (k - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
    bad |= _mm512_mask_cmp_ps_mask(mk, _mm512_abs_ps(v), fmax, _CMP_NLE_UQ);
    vmn = _mm512_min_ps(vmn, v);
    vmx = _mm512_max_ps(vmx, v);
  }
  if (bad) return false;
  const float mn = _mm512_reduce_min_ps(vmn), mx = _mm512_reduce_max_ps(vmx);
  float s;
  int32_t z;
  avx512::u8_range_params(mn, mx, &s, &z);
  const float inv = 1.0f / s;
  const __m512 vinv = _mm512_set1_ps(inv);
  const __m512i vz = _mm512_set1_epi32(z), lo = _mm512_setzero_si512(), hi = _mm512_set1_epi32(255);
  for (int64_t i = 0; i < kp; i += 16) {
    const int64_t rem = k - i;
    const __mmask16 mk = rem >= 16 ? __mmask16(0xFFFF) : (rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1));
    const __m512 v = _mm512_maskz_loadu_ps(mk, x + i);
    __m512i qi = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, vinv)), vz);
    qi = _mm512_maskz_min_epi32(mk, _mm512_max_epi32(qi, lo), hi);  // lanes past k become 0
    const int64_t left = kp - i;
    const __mmask16 ms = left >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << left) - 1);
    _mm_mask_storeu_epi8(q + i, ms, _mm512_cvtepi32_epi8(qi));
  }
  *scale = s;
  *zp = z;
  return true;
}

}  // namespace slimnn
