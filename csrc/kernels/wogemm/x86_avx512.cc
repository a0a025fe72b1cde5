// AVX-512 wogemm: q8/q4 weights dequantized 16 columns x 4 (q8) or 8 (q4) k at a time (one 64-byte step of
// the stored layout: a byte shuffle inside each 128-bit lane and a dword permute turn [16 columns][4 k]
// into [4 k][16 columns]), and a 14x32 fp32 micro-kernel: 28 accumulators, two weight vectors and one
// broadcast per k (the 32 zmm registers; BLIS's and oneDNN's AVX-512 sgemm tiles have the same shape).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>

#include "kernels/act/act.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {
namespace avx512_wo {
namespace {

#include "common/simd/x86_avx512.h"
#include "kernels/qgemm/x86_avx512_common.h"

constexpr int kMR = 14, kNR = 32;

#include "kernels/wogemm/tile_impl.h"

// One 64-byte step [16 columns][4 k] (byte c*4 + j) -> lane j holds k = j for columns 0..15.
inline __m512i k_major(__m512i v) {
  const __m512i shuf = _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15));
  const __m512i perm = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_epi32(perm, _mm512_shuffle_epi8(v, shuf));
}

inline float* panel_dst(float* out, int64_t p, int64_t kc) { return out + (p / 2) * kc * kNR + (p % 2) * 16; }

// The other half of the last micro-panel when the block has an odd number of 16-column panels.
inline void zero_tail(int64_t panels, int64_t kc, float* out) {
  if (panels % 2 == 0) return;
  float* dst = panel_dst(out, panels, kc);
  for (int64_t kk = 0; kk < kc; ++kk) _mm512_storeu_ps(dst + kk * kNR, _mm512_setzero_ps());
}

void dequant_q8(const Q8View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < panels; ++p) {
    const int8_t* src = w.w + (p0 + p) * 16 * w.kp + k0 * 16;
    float* dst = panel_dst(out, p, kc);
    int64_t g_cur = -1;
    __m512 s = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < kc; kk += 4) {
      const int64_t g = w.n_groups == 1 ? 0 : (k0 + kk) / w.group_size;
      if (g != g_cur) {
        s = _mm512_loadu_ps(w.scales + g * w.np + (p0 + p) * 16);
        g_cur = g;
      }
      const __m512i v = k_major(_mm512_loadu_si512(src + kk * 16));
      float* d = dst + kk * kNR;
      _mm512_storeu_ps(d, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_castsi512_si128(v))), s));
      _mm512_storeu_ps(d + kNR,
                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 1))), s));
      _mm512_storeu_ps(d + 2 * kNR,
                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 2))), s));
      _mm512_storeu_ps(d + 3 * kNR,
                       _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 3))), s));
    }
  }
  zero_tail(panels, kc, out);
}

// 16 codes (u8) minus the zero points, times the scales: (u - z) * s, exact in the subtraction.
inline __m512 dq4(__m128i u, __m512 z, __m512 s) {
  return _mm512_mul_ps(_mm512_sub_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(u)), z), s);
}

void dequant_q4(const Q4View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  const __m512i nib = _mm512_set1_epi8(0x0F);
  for (int64_t p = 0; p < panels; ++p) {
    const uint8_t* src = w.w + (p0 + p) * 8 * w.kp + k0 * 8;
    float* dst = panel_dst(out, p, kc);
    int64_t g_cur = -1;
    __m512 s = _mm512_setzero_ps(), z = _mm512_set1_ps(8.0f);
    for (int64_t kk = 0; kk < kc; kk += 8) {
      const int64_t g = w.n_groups == 1 ? 0 : (k0 + kk) / w.group_size;
      if (g != g_cur) {
        const int64_t i = q4_sz_index(g, (p0 + p) * 16, w.n_groups);
        s = load_scales(w.scales, w.scale_dtype, i);
        if (w.zeros)
          z = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.zeros + i))));
        g_cur = g;
      }
      const __m512i v = _mm512_loadu_si512(src + kk * 8);
      const __m512i lo = k_major(_mm512_and_si512(v, nib));
      const __m512i hi = k_major(_mm512_and_si512(_mm512_srli_epi16(v, 4), nib));
      float* d = dst + kk * kNR;
      _mm512_storeu_ps(d, dq4(_mm512_castsi512_si128(lo), z, s));
      _mm512_storeu_ps(d + kNR, dq4(_mm512_extracti32x4_epi32(lo, 1), z, s));
      _mm512_storeu_ps(d + 2 * kNR, dq4(_mm512_extracti32x4_epi32(lo, 2), z, s));
      _mm512_storeu_ps(d + 3 * kNR, dq4(_mm512_extracti32x4_epi32(lo, 3), z, s));
      _mm512_storeu_ps(d + 4 * kNR, dq4(_mm512_castsi512_si128(hi), z, s));
      _mm512_storeu_ps(d + 5 * kNR, dq4(_mm512_extracti32x4_epi32(hi, 1), z, s));
      _mm512_storeu_ps(d + 6 * kNR, dq4(_mm512_extracti32x4_epi32(hi, 2), z, s));
      _mm512_storeu_ps(d + 7 * kNR, dq4(_mm512_extracti32x4_epi32(hi, 3), z, s));
    }
  }
  zero_tail(panels, kc, out);
}

#include "kernels/wogemm/panel_impl.h"

}  // namespace
}  // namespace avx512_wo

#define SLIMNN_WO_ISA avx512_wo
#define SLIMNN_WO_IF_avx512(kind, name) SLIMNN_WO_##kind(name)
#include "kernels/wogemm/entries.h"
#undef SLIMNN_WO_ISA

}  // namespace slimnn
