// AVX2 + FMA: q4 W4A8 dynamic kernel and weight-only kernel.
//
// No VNNI here: u8 activations times codes (0..15) with vpmaddubsw, whose int16 pair sums cannot saturate at
// these ranges (unlike the q8 kernel's u8 x s8, kernels/qgemm/x86_avx2.cc, which widens to int16), then
// vpmaddwd by ones to int32. Each 16-byte quarter of a 64-byte step holds 4 columns x 4 k in both nibbles.
#include <immintrin.h>

#include <cstring>

#include "common/count_dispatch.h"
#include "kernels/q4gemm/q4gemm.h"

namespace slimnn {
namespace q4_avx2 {
namespace {

#include "kernels/qgemm/x86_avx2_common.h"

// 8 scales inside the blob's np columns (never past the end) as fp32.
inline __m256 load_scales(const void* base, ScaleDtype dt, int64_t i) {
  if (dt == ScaleDtype::kF32) return _mm256_loadu_ps(static_cast<const float*>(base) + i);
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
  if (dt == ScaleDtype::kF16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

inline __m256i bcast_u8x4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Software prefetch distance along the weight stream (one line per 64-byte step; it runs on into the next
// panel, which the blob stores right after). At M = 1 the kernel waits on DRAM: SmolLM2-135M int4 decode on a
// Zen 3 went from 67-76 to 93-100 tokens/s at one thread with 2 KiB (1 KiB: 87-88; 4 KiB: 78-96).
constexpr int64_t kPrefetchBytes = 2048;

// acc[m][h] += the 8 column dots (columns 8h..8h+7) of row m over k8 steps [k8_0, k8_1). Codes (0..15) times
// u8 activations with vpmaddubsw: a pair sum is at most 2 * 15 * 255 = 7650, and the low- plus high-nibble pair
// sums at most 15300, so the int16 sums never saturate and every total is exact (as the int16-widened
// vpmaddwd form it replaces, with half the multiplies and no pair folding).
template <int MR>
inline void dot_block(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t k8_0, int64_t k8_1,
                      __m256i (&acc)[MR][2]) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
    _mm_prefetch(reinterpret_cast<const char*>(w + k8 * 64 + kPrefetchBytes), _MM_HINT_T0);
    __m256i wl[2], wh[2];
    for (int h = 0; h < 2; ++h) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + k8 * 64 + h * 32));
      wl[h] = _mm256_and_si256(v, m4);
      wh[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
    for (int m = 0; m < MR; ++m) {
      const __m256i al = bcast_u8x4(a + m * lda + k8 * 8), ah = bcast_u8x4(a + m * lda + k8 * 8 + 4);
      for (int h = 0; h < 2; ++h) {
        const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(al, wl[h]), _mm256_maddubs_epi16(ah, wh[h]));
        acc[m][h] = _mm256_add_epi32(acc[m][h], _mm256_madd_epi16(s16, ones));
      }
    }
  }
}

// The 8 column totals of half h (columns 8h..8h+7) of row m, zero-point term removed: E_g exactly.
template <int MR>
inline __m256i group_exact(const __m256i (&acc)[MR][2], int m, int h, const Q4Epilogue& e, int64_t g) {
  const __m256i d = acc[m][h];
  const int32_t asum = e.a_sum[m * e.n_groups + g];
  if (e.zeros == nullptr) return _mm256_sub_epi32(d, _mm256_set1_epi32(asum * 8));
  const __m256i zv =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(e.zeros + g * 16 + h * 8)));
  return _mm256_sub_epi32(d, _mm256_mullo_epi32(zv, _mm256_set1_epi32(asum)));
}

// The float-zero offsets o = s (8 - z) of half h of group g (s: its scales, already loaded), in fp32 as packing
// derives the blob's offsets.
inline __m256 fz_offsets(const Q4Epilogue& e, __m256 s, int64_t g, int h) {
  return _mm256_mul_ps(s, _mm256_sub_ps(_mm256_set1_ps(8.0f), load_scales(e.fzeros, e.scale_dtype, g * 16 + h * 8)));
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, const Q4Epilogue& e) {
  static_assert(NP == 1, "16 columns");
  __m256 facc[MR][2];
  zero(facc);
  // Float zero points (e.fzeros set: the driver let this kernel add the offset term): oacc[m][h] accumulates
  // sum_g o_g * xsum[m][g] as the driver's pass (fz_term.h) would, the same bits, without its second sweep
  // over the outputs and its fp32 offsets (4 bytes per group and column against the 2 of the zero points).
  const bool fz = e.fzeros != nullptr;
  __m256 oacc[MR][2];
  zero(oacc);
  auto block = [&](int64_t, int64_t k8_0, int64_t k8_1, __m256i (&acc)[MR][2]) { dot_block<MR>(a, lda, w, k8_0, k8_1, acc); };
  for_each_group<__m256i[MR][2]>(e.n_groups, e.group_k8, kp / 8, block, [&](int64_t g, __m256i (&acc)[MR][2]) {
    for (int h = 0; h < 2; ++h) {
      const __m256 sg = load_scales(e.scales, e.scale_dtype, g * 16 + h * 8);  // per channel: g is 0
      if (e.n_groups == 1) {
        // Per channel: subtract the activations' zero-point term in int32, exactly.
        const __m256i cs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e.colsum + h * 8));
        for (int m = 0; m < MR; ++m) {
          const __m256i exact =
              _mm256_sub_epi32(group_exact<MR>(acc, m, h, e, g), _mm256_mullo_epi32(_mm256_set1_epi32(e.a_zp[m]), cs));
          facc[m][h] = _mm256_mul_ps(_mm256_cvtepi32_ps(exact), sg);
        }
      } else {
        for (int m = 0; m < MR; ++m)
          facc[m][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(group_exact<MR>(acc, m, h, e, g)), sg, facc[m][h]);
      }
      if (fz) {
        const __m256 o = fz_offsets(e, sg, g, h);
        for (int m = 0; m < MR; ++m)
          oacc[m][h] = _mm256_fmadd_ps(o, _mm256_set1_ps(e.xsum[m * e.n_groups + g]), oacc[m][h]);
      }
    }
  });
  store_dyn<MR>(facc, e);
  if (fz) {  // y += oacc: the pass's final add, on the row just stored (still in L1)
    for (int h = 0; h < 2; ++h) {
      const int64_t nc = e.ncols - h * 8;
      if (nc <= 0) continue;
      for (int m = 0; m < MR; ++m) {
        float* yp = e.y + m * e.ldy + h * 8;
        store_cols(yp, _mm256_add_ps(loadu_cols(yp, nc), oacc[m][h]), nc);
      }
    }
  }
}

// The zero points of columns 4j..4j+3, each repeated in its 4 bytes.
inline __m128i spread_zeros(__m128i z16, int j) {
  const __m128i idx = _mm_add_epi8(_mm_setr_epi8(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3),
                                   _mm_set1_epi8(static_cast<char>(4 * j)));
  return _mm_shuffle_epi8(z16, idx);
}

template <int MR, int NP>
void wo(const float* x, int64_t, const uint8_t* w, int64_t kp, const Q4Epilogue& e) {
  static_assert(MR == 1 && NP == 1, "one row, 16 columns");
  const __m128i m4 = _mm_set1_epi8(0x0F);
  __m256 out[2];
  zero(out);
  auto block = [&](int64_t g, int64_t k8_0, int64_t k8_1, __m256 (&acc)[8]) {
    __m128i zb[4];
    if (e.zeros) {
      const __m128i z16 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(e.zeros + g * 16));
      for (int j = 0; j < 4; ++j) zb[j] = spread_zeros(z16, j);
    } else {
      for (int j = 0; j < 4; ++j) zb[j] = _mm_set1_epi8(8);
    }
    for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
      const __m256 xl = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + k8 * 8));
      const __m256 xh = _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x + k8 * 8 + 4));
      for (int j = 0; j < 4; ++j) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k8 * 64 + j * 16));
        const __m128i lo = _mm_sub_epi8(_mm_and_si128(v, m4), zb[j]);
        const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), m4), zb[j]);
        const __m256 l0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo));
        const __m256 l1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(lo, lo)));
        const __m256 h0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi));
        const __m256 h1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(hi, hi)));
        acc[2 * j] = _mm256_fmadd_ps(h0, xh, _mm256_fmadd_ps(l0, xl, acc[2 * j]));
        acc[2 * j + 1] = _mm256_fmadd_ps(h1, xh, _mm256_fmadd_ps(l1, xl, acc[2 * j + 1]));
      }
    }
  };
  for_each_group<__m256[8]>(e.n_groups, e.group_k8, kp / 8, block, [&](int64_t g, __m256 (&acc)[8]) {
    for (int h = 0; h < 2; ++h) {
      const __m256 sg = load_scales(e.scales, e.scale_dtype, g * 16 + h * 8);
      out[h] = _mm256_fmadd_ps(reduce8(acc + 4 * h), sg, out[h]);
    }
  });
  store_wo(out, e);
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  static_assert(NP == 1, "16 columns");
  for (int m = 0; m < MR; ++m) {
    Q4Epilogue em = e;
    em.a_sum = e.a_sum + m * e.n_groups;
    auto block = [&](int64_t, int64_t k8_0, int64_t k8_1, __m256i (&acc)[1][2]) { dot_block<1>(a + m * lda, lda, w, k8_0, k8_1, acc); };
    for_each_group<__m256i[1][2]>(e.n_groups, e.group_k8, kp / 8, block, [&](int64_t g, __m256i (&acc)[1][2]) {
      for (int h = 0; h < 2; ++h)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + m * ldo + g * e.np + h * 8), group_exact<1>(acc, 0, h, em, g));
    });
  }
}

}  // namespace
}  // namespace q4_avx2

#define SLIMNN_X86_ISA q4_avx2
#define SLIMNN_X86_KERNELS "kernels/q4gemm/kernels.inc"
#define SLIMNN_X86_IF_avx2(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx2
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

namespace q4_fz_avx2 {
namespace {
#include "common/simd/x86_avx2.h"
#include "kernels/q4gemm/fz_term.h"
}  // namespace
}  // namespace q4_fz_avx2

SLIMNN_Q4_FZ_ENTRIES(avx2, q4_fz_avx2)

}  // namespace slimnn
