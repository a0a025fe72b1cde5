// The AVX-512 pieces the q8 (qgemm) and q4 (q4gemm) kernels share (avx512 and avx512vnni files): column
// masks, the group walk (x86_groups.h), the fold of the weight-only accumulators, the epilogues, broadcasts
// of activation bytes and the q4 scale loads. Include inside the ISA file's own namespace (ODR-safe), after formats/q4.h (ScaleDtype).
// (not a header guard: included once per ISA translation unit, inside a namespace)

inline __mmask16 col_mask(int64_t ncols, int p) {
  const int64_t rem = ncols - int64_t(p) * 16;
  return rem >= 16 ? __mmask16(0xFFFF) : (rem <= 0 ? __mmask16(0) : __mmask16((1u << rem) - 1));
}

// acc[j] lane-block b holds column 4j+b's four partial sums; returns the 16 column totals in order.
inline __m512 reduce4x4(const __m512 (&acc)[4]) {
  const __m512 sab = _mm512_add_ps(_mm512_unpacklo_ps(acc[0], acc[1]), _mm512_unpackhi_ps(acc[0], acc[1]));
  const __m512 scd = _mm512_add_ps(_mm512_unpacklo_ps(acc[2], acc[3]), _mm512_unpackhi_ps(acc[2], acc[3]));
  const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(sab, scd, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(sab, scd, _MM_SHUFFLE(3, 2, 3, 2)));
  // r[4*b + j] = column 4*j + b
  const __m512i idx = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_permutexvar_ps(idx, r);
}

// 4 activation bytes broadcast to every int32 lane.
inline __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// 16 q4 scales (all inside the blob's np columns, so never masked) as fp32.
inline __m512 load_scales(const void* base, ScaleDtype dt, int64_t i) {
  if (dt == ScaleDtype::kF32) return _mm512_loadu_ps(static_cast<const float*>(base) + i);
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(base) + i));
  if (dt == ScaleDtype::kF16) return _mm512_cvtph_ps(h);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

inline void zero(__m512& v) { v = _mm512_setzero_ps(); }
inline void zero(__m512i& v) { v = _mm512_setzero_si512(); }
#include "kernels/qgemm/x86_groups.h"

// The epilogue's store loop: for each panel p with columns left, row(p, mask) gives a function of (m, bias)
// returning row m's 16 outputs, stored masked to the block's columns (bias: masked load, or zero).
template <int MR, int NP, typename Epilogue, typename Row>
inline void store_panels(const Epilogue& e, Row&& row) {
  for (int p = 0; p < NP; ++p) {
    const __mmask16 mask = col_mask(e.ncols, p);
    if (!mask) continue;
    const __m512 bias = e.bias ? _mm512_maskz_loadu_ps(mask, e.bias + p * 16) : _mm512_setzero_ps();
    auto out = row(p, mask);
    for (int m = 0; m < MR; ++m) _mm512_mask_storeu_ps(e.y + m * e.ldy + p * 16, mask, out(m, bias));
  }
}

// Weight-only: y = out + bias.
template <int MR, int NP, typename Epilogue>
inline void store_wo(const __m512 (&out)[MR][NP], const Epilogue& e) {
  store_panels<MR, NP>(e, [&](int p, __mmask16) {
    return [&, p](int m, __m512 bias) { return _mm512_add_ps(out[m][p], bias); };
  });
}

// Weight-only, after a group: out += reduce4x4(acc) * scale(p), scale(p) the group's 16 scales of panel p.
template <int MR, int NP, typename Scale>
inline void add_group_wo(__m512 (&out)[MR][NP], const __m512 (&acc)[MR][NP][4], Scale&& scale) {
  for (int p = 0; p < NP; ++p) {
    const __m512 sg = scale(p);
    for (int m = 0; m < MR; ++m) out[m][p] = _mm512_fmadd_ps(reduce4x4(acc[m][p]), sg, out[m][p]);
  }
}

// Dynamic, one group (per channel), from the exact int32 column totals: the activations' zero-point term
// removed in int32, y = (acc - zp[m] * colsum) * (scale(p, mask) * a_scale[m]) + bias.
template <int MR, int NP, typename Epilogue, typename Scale>
inline void store_exact(const __m512i (&acc)[MR][NP], const Epilogue& e, Scale&& scale) {
  store_panels<MR, NP>(e, [&](int p, __mmask16 mask) {
    const __m512i cs = _mm512_maskz_loadu_epi32(mask, e.colsum + p * 16);
    const __m512 sw = scale(p, mask);
    return [&, p, cs, sw](int m, __m512 bias) {
      const __m512i exact = _mm512_sub_epi32(acc[m][p], _mm512_mullo_epi32(_mm512_set1_epi32(e.a_zp[m]), cs));
      const __m512 s = _mm512_mul_ps(sw, _mm512_set1_ps(e.a_scale[m]));
      return _mm512_fmadd_ps(_mm512_cvtepi32_ps(exact), s, bias);
    };
  });
}

// Dynamic, several groups, from the fp32 sum over groups: y = (facc - zp[m] * comp) * a_scale[m] + bias.
template <int MR, int NP, typename Epilogue>
inline void store_comp(const __m512 (&facc)[MR][NP], const Epilogue& e) {
  store_panels<MR, NP>(e, [&](int p, __mmask16 mask) {
    const __m512 comp = _mm512_maskz_loadu_ps(mask, e.comp + p * 16);
    return [&, p, comp](int m, __m512 bias) {
      const __m512 r = _mm512_fnmadd_ps(_mm512_set1_ps(float(e.a_zp[m])), comp, facc[m][p]);
      return _mm512_fmadd_ps(r, _mm512_set1_ps(e.a_scale[m]), bias);
    };
  });
}
