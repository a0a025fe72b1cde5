// AVX-512 VNNI: W4A8 dynamic kernels. One 64-byte load is 16 columns x 8 k of codes; `and 0x0F` gives the
// [16][4] operand for k..k+3 and `srli 4, and 0x0F` the one for k+4..k+7, each fed to vpdpbusd with the
// activations broadcast 4 bytes at a time. Codes stay unsigned (0..15); the zero point is removed once per
// group in int32 (E_g = acc - z * asum_g), then scaled in fp32 (see q4gemm.h).
#include <immintrin.h>

#include <cstring>

#include "common/count_dispatch.h"
#include "kernels/q4gemm/q4gemm.h"

namespace slimnn {
namespace q4_avx512vnni {
namespace {

#include "kernels/qgemm/x86_avx512_common.h"

// acc + the u8 x s8 dot products of a and b, 4 bytes per int32 lane (vpdpbusd). Written in asm because
// gcc 12 copies the accumulator to a new register around every _mm512_dpbusd_epi32 (and spills under
// pressure); here it stays in place.
inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
}

// acc[m][p] += dot of rows m with panels p over k8 steps [k8_0, k8_1). With one row and fewer than 8 panels, the
// high-nibble products go to a second accumulator so two independent vpdpbusd chains hide its latency (8 panels
// are 8 chains already, and the registers are needed for the loads).
template <int MR, int NP>
inline void dot_block(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, int64_t k8_0, int64_t k8_1,
                      __m512i (&acc)[MR][NP]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  constexpr bool kSplit = MR == 1 && NP < 8;
  constexpr int kHi = kSplit ? NP : 1;
  __m512i acc_hi[kHi];
  for (int p = 0; p < kHi; ++p) acc_hi[p] = _mm512_setzero_si512();
  for (int64_t k8 = k8_0; k8 < k8_1; ++k8) {
    __m512i lo[NP], hi[NP];
    for (int p = 0; p < NP; ++p) {
      const __m512i v = _mm512_loadu_si512(w + p * 8 * kp + k8 * 64);
      lo[p] = _mm512_and_si512(v, m4);
      hi[p] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
    for (int m = 0; m < MR; ++m) {
      const __m512i a0 = bcast4(a + m * lda + k8 * 8), a1 = bcast4(a + m * lda + k8 * 8 + 4);
      for (int p = 0; p < NP; ++p) {
        acc[m][p] = dpbusd(acc[m][p], a0, lo[p]);
        if (kSplit)
          acc_hi[p % kHi] = dpbusd(acc_hi[p % kHi], a1, hi[p]);
        else
          acc[m][p] = dpbusd(acc[m][p], a1, hi[p]);
      }
    }
  }
  if (kSplit)
    for (int p = 0; p < NP; ++p) acc[0][p] = _mm512_add_epi32(acc[0][p], acc_hi[p % kHi]);
}

// acc -= z_g[col] * asum_g[row]: the weights' zero point, exactly in int32.
template <int MR, int NP>
inline void sub_zero_term(__m512i (&acc)[MR][NP], const Q4Epilogue& e, int64_t g) {
  if (e.zeros == nullptr) {
    for (int m = 0; m < MR; ++m) {
      const __m512i c = _mm512_set1_epi32(e.a_sum[m * e.n_groups + g] * 8);
      for (int p = 0; p < NP; ++p) acc[m][p] = _mm512_sub_epi32(acc[m][p], c);
    }
    return;
  }
  for (int p = 0; p < NP; ++p) {
    const __m512i zv =
        _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(e.zeros + (p * e.n_groups + g) * 16)));
    for (int m = 0; m < MR; ++m)
      acc[m][p] = _mm512_sub_epi32(acc[m][p], _mm512_mullo_epi32(zv, _mm512_set1_epi32(e.a_sum[m * e.n_groups + g])));
  }
}

// E_g of each group (raw dot products, then the weights' zero-point term), then fn(g, acc).
template <int MR, int NP, typename Fn>
inline void group_ints(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, const Q4Epilogue& e, Fn&& fn) {
  auto block = [&](int64_t g, int64_t k8_0, int64_t k8_1, __m512i (&acc)[MR][NP]) {
    dot_block<MR, NP>(a, lda, w, kp, k8_0, k8_1, acc);
    sub_zero_term<MR, NP>(acc, e, g);
  };
  for_each_group<__m512i[MR][NP]>(e.n_groups, e.group_k8, kp / 8, block, fn);
}

template <int MR, int NP>
void dyn(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, const Q4Epilogue& e) {
  if (e.n_groups == 1) {
    group_ints<MR, NP>(a, lda, w, kp, e, [&](int64_t, const __m512i (&acc)[MR][NP]) {
      store_exact<MR, NP>(acc, e, [&](int p, __mmask16) { return load_scales(e.scales, e.scale_dtype, p * 16); });
    });
    if constexpr (MR == 1) {
      if (e.fzeros) {  // per channel: y += s (8 - z) * xsum, as the driver's pass would
        const __m512 xs = _mm512_set1_ps(e.xsum[0]), eight = _mm512_set1_ps(8.0f);
        for (int p = 0; p < NP; ++p) {
          const __mmask16 mask = col_mask(e.ncols, p);
          const __m512 o = _mm512_mul_ps(load_scales(e.scales, e.scale_dtype, p * 16),
                                         _mm512_sub_ps(eight, load_scales(e.fzeros, e.scale_dtype, p * 16)));
          float* yp = e.y + p * 16;
          // fma(o, xs, 0) as the pass computes it (a plain product would be contracted into y's add)
          const __m512 t = _mm512_fmadd_ps(o, xs, _mm512_setzero_ps());
          _mm512_mask_storeu_ps(yp, mask, _mm512_add_ps(_mm512_maskz_loadu_ps(mask, yp), t));
        }
      }
    }
    return;
  }
  __m512 facc[MR][NP];
  zero(facc);
  auto scaled = [&](int64_t g, const __m512i (&acc)[MR][NP], auto&& also) {
    for (int p = 0; p < NP; ++p) {
      const __m512 sg = load_scales(e.scales, e.scale_dtype, (p * e.n_groups + g) * 16);
      for (int m = 0; m < MR; ++m) facc[m][p] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[m][p]), sg, facc[m][p]);
      also(p, sg);
    }
  };
  if constexpr (MR == 1) {
    if (e.fzeros) {
      // The float-zero offset term: o = s (8 - z), oacc += o * xsum_g (the driver's pass, fz_term.h, in registers).
      __m512 oacc[NP];
      zero(oacc);
      const __m512 eight = _mm512_set1_ps(8.0f);
      group_ints<1, NP>(a, lda, w, kp, e, [&](int64_t g, const __m512i (&acc)[1][NP]) {
        const __m512 xs = _mm512_set1_ps(e.xsum[g]);
        scaled(g, acc, [&](int p, __m512 sg) {
          const __m512 z = load_scales(e.fzeros, e.scale_dtype, (p * e.n_groups + g) * 16);
          oacc[p] = _mm512_fmadd_ps(_mm512_mul_ps(sg, _mm512_sub_ps(eight, z)), xs, oacc[p]);
        });
      });
      store_panels<1, NP>(e, [&](int p, __mmask16 mask) {
        const __m512 comp = _mm512_maskz_loadu_ps(mask, e.comp + p * 16);
        return [&, p, comp](int, __m512 bias) {
          const __m512 r = _mm512_fnmadd_ps(_mm512_set1_ps(float(e.a_zp[0])), comp, facc[0][p]);
          return _mm512_add_ps(_mm512_fmadd_ps(r, _mm512_set1_ps(e.a_scale[0]), bias), oacc[p]);
        };
      });
      return;
    }
  }
  group_ints<MR, NP>(a, lda, w, kp, e, [&](int64_t g, const __m512i (&acc)[MR][NP]) { scaled(g, acc, [](int, __m512) {}); });
  store_comp<MR, NP>(facc, e);
}

template <int MR, int NP>
void dot(const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  group_ints<MR, NP>(a, lda, w, kp, e, [&](int64_t g, const __m512i (&acc)[MR][NP]) {
    for (int m = 0; m < MR; ++m)
      for (int p = 0; p < NP; ++p) _mm512_storeu_si512(out + m * ldo + g * e.np + p * 16, acc[m][p]);
  });
}

}  // namespace
}  // namespace q4_avx512vnni

#define SLIMNN_X86_ISA q4_avx512vnni
#define SLIMNN_X86_KERNELS "kernels/q4gemm/kernels.inc"
#define SLIMNN_X86_IF_avx512vnni(kind, name, mr, np) SLIMNN_X86_##kind(name, mr, np)
#include "kernels/qgemm/x86_entries.h"
#undef SLIMNN_X86_IF_avx512vnni
#undef SLIMNN_X86_KERNELS
#undef SLIMNN_X86_ISA

}  // namespace slimnn
