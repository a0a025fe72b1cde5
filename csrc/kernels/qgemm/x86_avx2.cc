// AVX2 + FMA: W8A8 dynamic kernel, weight-only kernel, row quantization.
//
// No VNNI here, and vpmaddubsw (u8 x s8 -> saturating int16 pairs) would overflow: 255 * 127 * 2 > 32767.
// So both operands are widened to int16 and multiplied with vpmaddwd, whose int32 pair sums are exact.
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "common/count_dispatch.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "kernels/qgemm/x86_avx2_common.h"
#include "kernels/qgemm/u8_params.h"

inline __m256i loadu_cols_i32(const int32_t* p, int64_t ncols) {
  if (ncols >= 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  alignas(32) int32_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c = 0; c < ncols && c < 8; ++c) t[c] = p[c];
  return _mm256_load_si256(reinterpret_cast<const __m256i*>(t));
}

template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const int8_t* w, int64_t k4_0, int64_t k4_1,
                      __m256i (&acc)[MR][4]) {
  for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
    __m256i wv[4];
    for (int j = 0; j < 4; ++j)
      wv[j] = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k4 * 64 + j * 16)));
    for (int m = 0; m < MR; ++m) {
      int32_t v;
      std::memcpy(&v, a + m * lda + k4 * 4, 4);
      const __m256i av = _mm256_broadcastq_epi64(_mm_cvtepu8_epi16(_mm_cvtsi32_si128(v)));
      for (int j = 0; j < 4; ++j) acc[m][j] = _mm256_add_epi32(acc[m][j], _mm256_madd_epi16(av, wv[j]));
    }
  }
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  static_assert(NP == 1, "16 columns");
  __m256 facc[MR][2];
  zero(facc);
  auto block = [&](int64_t, int64_t k4_0, int64_t k4_1, __m256i (&acc)[MR][4]) { dot_block<MR>(a, lda, w, k4_0, k4_1, acc); };
  for_each_group<__m256i[MR][4]>(e.n_groups, e.group_k4, kp / 4, block, [&](int64_t g, __m256i (&acc)[MR][4]) {
    for (int h = 0; h < 2; ++h) {
      const int64_t nc = e.ncols - h * 8;
      if (e.n_groups == 1) {
        // Per-channel: subtract the zero-point term in int32, exactly.
        const __m256i cs = loadu_cols_i32(e.colsum + h * 8, nc);
        const __m256 sw = loadu_cols(e.scales + h * 8, nc);
        for (int m = 0; m < MR; ++m) {
          const __m256i d = fold_pairs(acc[m][2 * h], acc[m][2 * h + 1]);
          const __m256i exact = _mm256_sub_epi32(d, _mm256_mullo_epi32(_mm256_set1_epi32(e.a_zp[m]), cs));
          facc[m][h] = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), sw);
        }
      } else {
        const __m256 sg = loadu_cols(e.scales + g * e.np + h * 8, nc);
        for (int m = 0; m < MR; ++m) {
          const __m256i d = fold_pairs(acc[m][2 * h], acc[m][2 * h + 1]);
          facc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), sg, facc[m][h]);
        }
      }
    }
  });
  store_dyn<MR>(facc, e);
}

template <int MR, int NP>
void wo(const float* x, int64_t, const int8_t* w, int64_t kp, const Q8Epilogue& e) {
  static_assert(MR == 1 && NP == 1, "one row, 16 columns");
  __m256 out[2];
  zero(out);
  auto block = [&](int64_t, int64_t k4_0, int64_t k4_1, __m256 (&acc)[8]) {
    for (int64_t k4 = k4_0; k4 < k4_1; ++k4) {
      const __m256 xv = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + k4 * 4));
      for (int i = 0; i < 8; ++i) {
        const __m256i wi = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + k4 * 64 + i * 8)));
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(wi), xv, acc[i]);
      }
    }
  };
  for_each_group<__m256[8]>(e.n_groups, e.group_k4, kp / 4, block, [&](int64_t g, __m256 (&acc)[8]) {
    for (int h = 0; h < 2; ++h) {
      const __m256 sg = loadu_cols(e.scales + g * e.np + h * 8, e.ncols - h * 8);
      out[h] = _mm256_fmadd_ps(reduce8(acc + 4 * h), sg, out[h]);
    }
  });
  store_wo(out, e);
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, int64_t ldo) {
  static_assert(NP == 1, "16 columns");
  for (int m = 0; m < MR; ++m) {
    __m256i acc[1][4];
    zero(acc);
    dot_block<1>(a + m * lda, lda, w, 0, kp / 4, acc);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * ldo), fold_pairs(acc[0][0], acc[0][1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * ldo + 8), fold_pairs(acc[0][2], acc[0][3]));
  }
}

}  // namespace
}  // namespace avx2

#define SLIMNN_X86_ISA avx2
#define SLIMNN_X86_KERNELS "kernels/qgemm/kernels.inc"
#define SLIMNN_X86_IF_avx2(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx2
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

// Same formula as quantize_row_u8__portable (ref.cc), 8 lanes at a time, with a scalar tail.
bool quantize_row_u8__avx2(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp) {
  const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), fmax = _mm256_set1_ps(FLT_MAX);
  __m256 vmn = _mm256_setzero_ps(), vmx = _mm256_setzero_ps();
  int bad = 0;
  int64_t i = 0;
  for (; i + 8 <= k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    bad |= _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(v, absmask), fmax, _CMP_NLE_UQ));
    vmn = _mm256_min_ps(vmn, v);
    vmx = _mm256_max_ps(vmx, v);
  }
  alignas(32) float tmn[8], tmx[8];
  _mm256_store_ps(tmn, vmn);
  _mm256_store_ps(tmx, vmx);
  float mn = 0.0f, mx = 0.0f;
  for (int j = 0; j < 8; ++j) {
    mn = tmn[j] < mn ? tmn[j] : mn;
    mx = tmx[j] > mx ? tmx[j] : mx;
  }
  for (; i < k; ++i) {
    if (!(__builtin_fabsf(x[i]) <= FLT_MAX)) bad = 1;
    mn = x[i] < mn ? x[i] : mn;
    mx = x[i] > mx ? x[i] : mx;
  }
  if (bad) return false;
  float s;
  int32_t z;
  avx2::u8_range_params(mn, mx, &s, &z);
  const float inv = 1.0f / s;
  const __m256 vinv = _mm256_set1_ps(inv);
  const __m256i vz = _mm256_set1_epi32(z);
  for (i = 0; i + 8 <= k; i += 8) {
    __m256i qi = _mm256_add_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), vinv)), vz);
    qi = _mm256_min_epi32(_mm256_max_epi32(qi, _mm256_setzero_si256()), _mm256_set1_epi32(255));
    const __m128i p16 = _mm_packus_epi32(_mm256_castsi256_si128(qi), _mm256_extracti128_si256(qi, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packus_epi16(p16, p16));
  }
  for (; i < k; ++i) {
    int32_t v = _mm_cvtss_si32(_mm_set_ss(x[i] * inv)) + z;
    q[i] = uint8_t(v < 0 ? 0 : (v > 255 ? 255 : v));
  }
  for (; i < kp; ++i) q[i] = 0;
  *scale = s;
  *zp = z;
  return true;
}

}  // namespace slimnn
