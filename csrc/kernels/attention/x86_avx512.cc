// AVX-512 F: the attention tile (flash_tile.h) on 16 fp32 lanes (common/simd/x86_avx512.h), its exp
// (common/simd/x86_math.h), and K^T packing by in-register 16 x 16 transposes.
#include <immintrin.h>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "common/simd/x86_avx512.h"
#include "common/simd/x86_math.h"

// kt[e][j] = k[j][e] (the flash_tile.h contract) by 16 x 16 in-register transposes: masked row loads (nothing
// read past d), rows past nb are zero vectors, which are exactly the zero columns [nb, round_up(nb, 16)).
inline void transpose16(V* r) {
  V u[16];
  for (int i = 0; i < 16; i += 4) {  // rows i..i+3: u[i + c] lane L = rows i..i+3 at column 4L + c
    const V a = _mm512_unpacklo_ps(r[i], r[i + 1]), b = _mm512_unpackhi_ps(r[i], r[i + 1]);
    const V c = _mm512_unpacklo_ps(r[i + 2], r[i + 3]), d = _mm512_unpackhi_ps(r[i + 2], r[i + 3]);
    u[i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
    u[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(c)));
    u[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
    u[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(b), _mm512_castps_pd(d)));
  }
  for (int c = 0; c < 4; ++c) {  // output row 4L + c gathers lane L of u[c], u[4 + c], u[8 + c], u[12 + c]
    const V v01 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), v23 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
    const V w01 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44), w23 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    r[c] = _mm512_shuffle_f32x4(v01, w01, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v01, w01, 0xDD);
    r[8 + c] = _mm512_shuffle_f32x4(v23, w23, 0x88);
    r[12 + c] = _mm512_shuffle_f32x4(v23, w23, 0xDD);
  }
}

#define SLIMNN_ATTN_HAVE_PACK_KT 1
#define SLIMNN_ATTN_ROWS 8  // 32 registers: 8 rows x 2 vectors of accumulators fit
inline void pack_kt(const float* k, int64_t ldk, int64_t nb, int64_t d, float* kt, int64_t ldkt) {
  for (int64_t j = 0; j < nb; j += 16) {
    const int nj = int(nb - j < 16 ? nb - j : 16);
    for (int64_t e = 0; e < d; e += 16) {
      const int ne = int(d - e < 16 ? d - e : 16);
      const __mmask16 me = first_n(ne);
      V r[16];
      for (int i = 0; i < 16; ++i) r[i] = i < nj ? _mm512_maskz_loadu_ps(me, k + (j + i) * ldk + e) : _mm512_setzero_ps();
      transpose16(r);
      for (int c = 0; c < ne; ++c) _mm512_storeu_ps(kt + (e + c) * ldkt + j, r[c]);
    }
  }
}

#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace avx512

void attention_f32_flash__avx512(const AttnTile& t) { avx512::flash_tile(t); }
void attention_exp_f32__avx512(const float* x, float* y, int64_t n) { avx512::exp_array(x, y, n); }

}  // namespace slimnn
