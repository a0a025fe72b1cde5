// AVX2 + FMA: the attention tile (flash_tile.h) on 8 fp32 lanes (common/simd/x86_avx2.h), its exp
// (common/simd/x86_math.h), and K^T packing by in-register 8 x 8 transposes.
#include <immintrin.h>

#include "kernels/attention/attention.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "common/simd/x86_avx2.h"
#include "common/simd/x86_math.h"

// kt[e][j] = k[j][e] (the flash_tile.h contract) by 8 x 8 in-register transposes: masked row loads (nothing
// read past d), rows past nb are zero vectors, which are exactly the zero columns [nb, round_up(nb, 8)). The
// portable element loop it replaces was about 30% of a decode step at a 1.5K-token cache (stores 512 bytes
// apart, one float each).
inline void transpose8(V* r) {
  const V a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
  const V a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
  const V a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
  const V a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
  // b0: rows 0..3 at columns 0 and 4 (one per 128-bit half), b1: columns 1 and 5, b2: 2 and 6, b3: 3 and 7
  const V b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
  const V b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
  const V c0 = _mm256_shuffle_ps(a4, a6, 0x44), c1 = _mm256_shuffle_ps(a4, a6, 0xEE);
  const V c2 = _mm256_shuffle_ps(a5, a7, 0x44), c3 = _mm256_shuffle_ps(a5, a7, 0xEE);
  r[0] = _mm256_permute2f128_ps(b0, c0, 0x20), r[4] = _mm256_permute2f128_ps(b0, c0, 0x31);
  r[1] = _mm256_permute2f128_ps(b1, c1, 0x20), r[5] = _mm256_permute2f128_ps(b1, c1, 0x31);
  r[2] = _mm256_permute2f128_ps(b2, c2, 0x20), r[6] = _mm256_permute2f128_ps(b2, c2, 0x31);
  r[3] = _mm256_permute2f128_ps(b3, c3, 0x20), r[7] = _mm256_permute2f128_ps(b3, c3, 0x31);
}

#define SLIMNN_ATTN_HAVE_PACK_KT 1
inline void pack_kt(const float* k, int64_t ldk, int64_t nb, int64_t d, float* kt, int64_t ldkt) {
  for (int64_t j = 0; j < nb; j += 8) {
    const int nj = int(nb - j < 8 ? nb - j : 8);
    for (int64_t e = 0; e < d; e += 8) {
      const int ne = int(d - e < 8 ? d - e : 8);
      V r[8];
      for (int i = 0; i < 8; ++i) r[i] = i < nj ? vload_n(k + (j + i) * ldk + e, ne) : vzero();
      transpose8(r);
      for (int c = 0; c < ne; ++c) _mm256_storeu_ps(kt + (e + c) * ldkt + j, r[c]);
    }
  }
}

#include "kernels/attention/flash_tile.h"

}  // namespace
}  // namespace avx2

void attention_f32_flash__avx2(const AttnTile& t) { avx2::flash_tile(t); }
void attention_exp_f32__avx2(const float* x, float* y, int64_t n) { avx2::exp_array(x, y, n); }

}  // namespace slimnn
