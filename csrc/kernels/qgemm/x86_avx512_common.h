// The AVX-512 pieces the q8 (qgemm) and q4 (q4gemm) kernels share (avx512 and avx512vnni files): column
// masks of the epilogue, the fold of the weight-only accumulators, broadcasts of activation bytes and the
// q4 scale loads. Include inside the ISA file's own namespace (ODR-safe), after formats/q4.h (ScaleDtype).
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
