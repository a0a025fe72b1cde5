// The fp32 micro-tile of the wogemm x86 files, written once over the ISA's vector helpers
// (common/simd/x86_avx2.h or x86_avx512.h: V, M, W, vfma, ...). Include inside the ISA file's own namespace
// (ODR-safe), after that header and after defining kMR (rows) and kNR = 2 * W (columns). Provides ukernel,
// the contract of panel_impl.h: c[r][j] (+)= sum_{kk < kc} a[kk * kMR + r] * b[kk * kNR + j] (+ bias[j]) for
// r < mr, j < ncols; b is 64-byte aligned.
// (not a header guard: included once per ISA translation unit, inside a namespace)

template <int R>
void tile(int ncols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc, bool accumulate,
          const float* bias) {
  V c0[R], c1[R];
  for (int r = 0; r < R; ++r) c0[r] = c1[r] = vzero();
  for (int64_t kk = 0; kk < kc; ++kk) {
    const V b0 = vloada(b + kk * kNR), b1 = vloada(b + kk * kNR + W);
    for (int r = 0; r < R; ++r) {
      const V av = vset1(a[kk * kMR + r]);
      c0[r] = vfma(av, b0, c0[r]);
      c1[r] = vfma(av, b1, c1[r]);
    }
  }
  const M m0 = mask_n(ncols), m1 = mask_n(ncols - W);
  const V bias0 = bias ? vload_m(bias, m0) : vzero();
  const V bias1 = bias ? vload_m(bias + W, m1) : vzero();
  for (int r = 0; r < R; ++r) {
    float* cr = c + r * ldc;
    V v0 = c0[r], v1 = c1[r];
    if (accumulate) {
      v0 = vadd(v0, vload_m(cr, m0));
      v1 = vadd(v1, vload_m(cr + W, m1));
    }
    vstore_m(cr, m0, vadd(v0, bias0));
    vstore_m(cr + W, m1, vadd(v1, bias1));
  }
}

using TileFn = void (*)(int, int64_t, const float*, const float*, float*, int64_t, bool, const float*);
template <size_t... I>
constexpr std::array<TileFn, sizeof...(I)> tile_table(std::index_sequence<I...>) {
  return {{tile<int(I) + 1>...}};
}
constexpr std::array<TileFn, kMR> kTiles = tile_table(std::make_index_sequence<kMR>{});

inline void ukernel(int mr, int ncols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                    bool accumulate, const float* bias) {
  kTiles[mr - 1](ncols, kc, a, b, c, ldc, accumulate, bias);
}
