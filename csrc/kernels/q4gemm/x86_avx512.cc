// AVX-512 F/BW/VL/DQ: q4 weight-only kernels (fp32 activations, codes minus zero point widened to fp32).
//
// Per 8-k step and panel: one 64-byte load, nibbles split into two [16 columns][4 k] byte blocks, the zero
// point (one byte per column, spread to its 4 bytes with vpshufb) subtracted in int8, then each 16-byte
// quarter (4 columns x 4 k) widened to fp32 and multiplied by x[k..k+3] repeated in every 128-bit lane,
// as in the q8 weight-only kernel (kernels/qgemm/x86_avx512.cc); the 4 partials are folded once per group.
#include <immintrin.h>

#include <cstring>

#include "common/count_dispatch.h"
#include "kernels/q4gemm/q4gemm.h"

namespace slimnn {
namespace q4_avx512 {
namespace {

#include "kernels/qgemm/x86_avx512_common.h"

// Byte i of the result is z[column of byte i in a [16][4] block] = z[(i / 16) * 4 + (i % 16) / 4] after the
// 16 zero points are broadcast to every 128-bit lane (vpshufb indexes within a lane).
inline __m512i spread_zeros(const uint8_t* z16) {
  const __m512i idx = _mm512_set_epi32(0x0F0F0F0F, 0x0E0E0E0E, 0x0D0D0D0D, 0x0C0C0C0C, 0x0B0B0B0B, 0x0A0A0A0A,
                                       0x09090909, 0x08080808, 0x07070707, 0x06060606, 0x05050505, 0x04040404,
                                       0x03030303, 0x02020202, 0x01010101, 0x00000000);
  const __m512i z = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(z16)));
  return _mm512_shuffle_epi8(z, idx);
}

inline void widen(__m512i v, __m512 (&out)[4]) {
  out[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_castsi512_si128(v)));
  out[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 1)));
  out[2] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 2)));
  out[3] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm512_extracti32x4_epi32(v, 3)));
}

template <int MR, int NP>
__attribute__((flatten)) void wo(const float* x, int64_t ldx, const uint8_t* w, int64_t kp, const Q4Epilogue& e) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512 out[MR][NP];
  zero(out);
  auto block = [&](int64_t g, int64_t k8_0, int64_t k8_1, __m512 (&acc)[MR][NP][4]) {
    __m512i zb[NP];
    for (int p = 0; p < NP; ++p) zb[p] = e.zeros ? spread_zeros(e.zeros + (p * e.n_groups + g) * 16) : _mm512_set1_epi8(8);
    for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
      for (int p = 0; p < NP; ++p) {
        const __m512i v = _mm512_loadu_si512(w + p * 8 * kp + k8 * 64);
        __m512 wl[4], wh[4];
        widen(_mm512_sub_epi8(_mm512_and_si512(v, m4), zb[p]), wl);
        widen(_mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), zb[p]), wh);
        for (int m = 0; m < MR; ++m) {
          const __m512 xl = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + k8 * 8));
          const __m512 xh = _mm512_broadcast_f32x4(_mm_loadu_ps(x + m * ldx + k8 * 8 + 4));
          for (int j = 0; j < 4; ++j) {
            acc[m][p][j] = _mm512_fmadd_ps(wl[j], xl, acc[m][p][j]);
            acc[m][p][j] = _mm512_fmadd_ps(wh[j], xh, acc[m][p][j]);
          }
        }
      }
    }
  };
  for_each_group<__m512[MR][NP][4]>(e.n_groups, e.group_k8, kp / 8, block, [&](int64_t g, const __m512 (&acc)[MR][NP][4]) {
    add_group_wo<MR, NP>(out, acc, [&](int p) { return load_scales(e.scales, e.scale_dtype, (p * e.n_groups + g) * 16); });
  });
  store_wo<MR, NP>(out, e);
}

}  // namespace
}  // namespace q4_avx512

#define SLIMNN_X86_ISA q4_avx512
#define SLIMNN_X86_KERNELS "kernels/q4gemm/kernels.inc"
#define SLIMNN_X86_IF_avx512(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx512
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

namespace q4_fz_avx512 {
namespace {
#include "common/simd/x86_avx512.h"
#include "kernels/q4gemm/fz_term.h"
}  // namespace
}  // namespace q4_fz_avx512

SLIMNN_Q4_FZ_ENTRIES(avx512, q4_fz_avx512)

}  // namespace slimnn
