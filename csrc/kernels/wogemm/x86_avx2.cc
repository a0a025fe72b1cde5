// AVX2 wogemm: q8/q4 weights dequantized 8 columns x 4 k per 32-byte half of a stored step (byte shuffle in
// each 128-bit lane, dword permute across them), and a 6x16 fp32 micro-kernel: 12 accumulators, two weight
// vectors and one broadcast of the 16 ymm registers (the BLIS / XNNPACK AVX2 sgemm tile).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <utility>

#include "kernels/act/act.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {
namespace avx2_wo {
namespace {

#include "common/simd/x86_avx2.h"

constexpr int kMR = 6, kNR = 16;

#include "kernels/wogemm/tile_impl.h"

// 32 bytes [8 columns][4 k] (byte c*4 + j) -> bytes 8j..8j+7 hold k = j for the 8 columns.
inline __m256i k_major(__m256i v) {
  const __m256i shuf = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,  //
                                        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm256_permutevar8x32_epi32(_mm256_shuffle_epi8(v, shuf), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// The 4 k of one half (8 columns) into rows d, d + kNR, ..., widened by cvt (signed or unsigned bytes).
template <bool kSigned>
inline void store4(__m256i v, __m256 z, __m256 s, float* d) {
  const __m128i lo = _mm256_castsi256_si128(v), hi = _mm256_extracti128_si256(v, 1);
  const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
  for (int j = 0; j < 4; ++j) {
    const __m256i q = kSigned ? _mm256_cvtepi8_epi32(parts[j]) : _mm256_cvtepu8_epi32(parts[j]);
    _mm256_storeu_ps(d + j * kNR, _mm256_mul_ps(_mm256_sub_ps(_mm256_cvtepi32_ps(q), z), s));
  }
}

void dequant_q8(const Q8View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t p = 0; p < panels; ++p) {
    const int8_t* src = w.w + (p0 + p) * 16 * w.kp + k0 * 16;
    float* dst = out + p * kc * kNR;
    int64_t g_cur = -1;
    __m256 s0 = zero, s1 = zero;
    for (int64_t kk = 0; kk < kc; kk += 4) {
      const int64_t g = w.n_groups == 1 ? 0 : (k0 + kk) / w.group_size;
      if (g != g_cur) {
        s0 = _mm256_loadu_ps(w.scales + g * w.np + (p0 + p) * 16);
        s1 = _mm256_loadu_ps(w.scales + g * w.np + (p0 + p) * 16 + 8);
        g_cur = g;
      }
      const __m256i* step = reinterpret_cast<const __m256i*>(src + kk * 16);
      store4<true>(k_major(_mm256_loadu_si256(step)), zero, s0, dst + kk * kNR);
      store4<true>(k_major(_mm256_loadu_si256(step + 1)), zero, s1, dst + kk * kNR + 8);
    }
  }
}

inline __m256 load_scales8(const void* base, ScaleDtype dt, int64_t i) {
  if (dt == ScaleDtype::kF32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
  if (dt == ScaleDtype::kF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

void dequant_q4(const Q4View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  const __m256i nib = _mm256_set1_epi8(0x0F);
  for (int64_t p = 0; p < panels; ++p) {
    const uint8_t* src = w.w + (p0 + p) * 8 * w.kp + k0 * 8;
    float* dst = out + p * kc * kNR;
    int64_t g_cur = -1;
    __m256 s[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}, z[2] = {_mm256_set1_ps(8.0f), _mm256_set1_ps(8.0f)};
    for (int64_t kk = 0; kk < kc; kk += 8) {
      const int64_t g = w.n_groups == 1 ? 0 : (k0 + kk) / w.group_size;
      if (g != g_cur) {
        const int64_t i = q4_sz_index(g, (p0 + p) * 16, w.n_groups);
        for (int h = 0; h < 2; ++h) {
          s[h] = load_scales8(w.scales, w.scale_dtype, i + 8 * h);
          if (w.zeros) {
            const __m128i zb = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w.zeros + i + 8 * h));
            z[h] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(zb));
          }
        }
        g_cur = g;
      }
      for (int h = 0; h < 2; ++h) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + kk * 8) + h);
        float* d = dst + kk * kNR + 8 * h;
        store4<false>(k_major(_mm256_and_si256(v, nib)), z[h], s[h], d);
        store4<false>(k_major(_mm256_and_si256(_mm256_srli_epi16(v, 4), nib)), z[h], s[h], d + 4 * kNR);
      }
    }
  }
}

#include "kernels/wogemm/panel_impl.h"

}  // namespace
}  // namespace avx2_wo

#define SLIMNN_WO_ISA avx2_wo
#define SLIMNN_WO_IF_avx2(kind, name) SLIMNN_WO_##kind(name)
#include "kernels/wogemm/entries.h"
#undef SLIMNN_WO_ISA

}  // namespace slimnn
