// Float zero points (zero mode 2) on one ISA's fp32 vectors: the float group sums of an activation row and
// the offset term y[r][c] += sum_g off[g][c] * xsum[r][g] of one 16-column panel (offsets [n_groups][16]).
// Written once over the common/simd/<isa>.h names (V, W, vload, vload_n, vstore_n, vfma, vadd, hsum);
// include inside the ISA's own namespace after that header. The driver (q4gemm.cc) picks the ISA.
// (not a header guard: included once per ISA translation unit, inside a namespace)

// out[g] = sum of x[k] for k in [g*gs, min((g+1)*gs, k)); gs is a multiple of 32, so of W.
inline void fz_group_sums(const float* x, int64_t k, int64_t gs, int64_t ng, float* out) {
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t k0 = g * gs, k1 = k < k0 + gs ? k : k0 + gs;
    V acc = vzero();
    int64_t i = k0;
    for (; i + W <= k1; i += W) acc = vadd(acc, vload(x + i));
    if (i < k1) acc = vadd(acc, vload_n(x + i, static_cast<int>(k1 - i)));
    out[g] = hsum(acc);
  }
}

// Rows in blocks of R: each offset vector is loaded once per block, R broadcast FMAs per load.
template <int R>
inline void fz_rows(const float* off, int64_t ng, const float* xs, float* y, int64_t ldy, int nc) {
  constexpr int NV = 16 / W;
  V acc[R][NV];
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) acc[i][v] = vzero();
  for (int64_t g = 0; g < ng; ++g) {
    V o[NV];
    for (int v = 0; v < NV; ++v) o[v] = vload(off + g * 16 + v * W);
    for (int i = 0; i < R; ++i) {
      const V s = vset1(xs[i * ng + g]);
      for (int v = 0; v < NV; ++v) acc[i][v] = vfma(o[v], s, acc[i][v]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int v = 0; v < NV; ++v) {
      const int n = nc - v * W;
      if (n <= 0) break;
      float* p = y + i * ldy + v * W;
      vstore_n(p, vadd(vload_n(p, n), acc[i][v]), n);
    }
}

inline void fz_offset_panel(const float* off, int64_t ng, const float* xsum, int64_t m, float* y, int64_t ldy,
                            int nc) {
  int64_t r = 0;
  for (; r + 4 <= m; r += 4) fz_rows<4>(off, ng, xsum + r * ng, y + r * ldy, ldy, nc);
  for (; r < m; ++r) fz_rows<1>(off, ng, xsum + r * ng, y + r * ldy, ldy, nc);
}
