// The AVX2 pieces the q8 (qgemm) and q4 (q4gemm) kernels share: column-tail loads and stores, the group walk
// (x86_groups.h), the folds of their accumulators and the two epilogues. Include inside the ISA file's own
// namespace (ODR-safe).
// (not a header guard: included once per ISA translation unit, inside a namespace)

inline void store_cols(float* y, __m256 v, int64_t ncols) {
  if (ncols >= 8) {
    _mm256_storeu_ps(y, v);
  } else if (ncols > 0) {
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    for (int64_t c = 0; c < ncols; ++c) y[c] = t[c];
  }
}

inline __m256 loadu_cols(const float* p, int64_t ncols) {
  if (ncols >= 8) return _mm256_loadu_ps(p);
  alignas(32) float t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t c = 0; c < ncols && c < 8; ++c) t[c] = p[c];
  return _mm256_load_ps(t);
}

// acc[j] holds columns 4j..4j+3 as [c0 c0 c1 c1 | c2 c2 c3 c3] partial pairs; returns 8 totals, j in {0,1}.
inline __m256i fold_pairs(__m256i a, __m256i b) {
  return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), _MM_SHUFFLE(3, 1, 2, 0));
}

// acc[i] holds columns 2i, 2i+1 as [c c c c | c' c' c' c'] (4 partials each); returns 8 column totals.
inline __m256 reduce8(const __m256* acc) {
  const __m256 h01 = _mm256_hadd_ps(acc[0], acc[1]), h23 = _mm256_hadd_ps(acc[2], acc[3]);
  const __m256 hh = _mm256_hadd_ps(h01, h23);  // [c0 c2 c4 c6 | c1 c3 c5 c7]
  return _mm256_permutevar8x32_ps(hh, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline void zero(__m256& v) { v = _mm256_setzero_ps(); }
inline void zero(__m256i& v) { v = _mm256_setzero_si256(); }
#include "kernels/qgemm/x86_groups.h"

// Dynamic epilogue of MR rows x 16 columns (two halves h): y = r * a_scale[m] + bias, r = facc (one group:
// the exact per-channel term, already scaled) or facc - zp[m] * comp (several groups). Columns < e.ncols.
template <int MR, typename Epilogue>
inline void store_dyn(const __m256 (&facc)[MR][2], const Epilogue& e) {
  for (int h = 0; h < 2; ++h) {
    const int64_t nc = e.ncols - h * 8;
    if (nc <= 0) continue;
    const __m256 bias = e.bias ? loadu_cols(e.bias + h * 8, nc) : _mm256_setzero_ps();
    const __m256 comp = loadu_cols(e.comp + h * 8, nc);
    for (int m = 0; m < MR; ++m) {
      __m256 r = facc[m][h];
      if (e.n_groups != 1) r = _mm256_fnmadd_ps(_mm256_set1_ps(float(e.a_zp[m])), comp, r);
      store_cols(e.y + m * e.ldy + h * 8, _mm256_fmadd_ps(r, _mm256_set1_ps(e.a_scale[m]), bias), nc);
    }
  }
}

// Weight-only epilogue of one row x 16 columns: y = out + bias, columns < e.ncols.
template <typename Epilogue>
inline void store_wo(const __m256 (&out)[2], const Epilogue& e) {
  for (int h = 0; h < 2; ++h) {
    const int64_t nc = e.ncols - h * 8;
    if (nc <= 0) continue;
    const __m256 bias = e.bias ? loadu_cols(e.bias + h * 8, nc) : _mm256_setzero_ps();
    store_cols(e.y + h * 8, _mm256_add_ps(out[h], bias), nc);
  }
}
