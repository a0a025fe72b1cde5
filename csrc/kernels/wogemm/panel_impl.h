// The task loop every wogemm ISA file shares (wogemm.h describes the steps). Include inside the ISA file's
// own namespace (ODR-safe) after defining:
//   constexpr int kMR, kNR;          the micro-tile (kNR a multiple of 16)
//   void ukernel(int mr, int ncols, int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
//                bool accumulate, const float* bias);
//       c[r][j] (+)= sum_{kk < kc} a[kk * kMR + r] * b[kk * kNR + j] (+ bias[j]) for r < mr, j < ncols
//   void dequant_q8(const Q8View&, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out);
//   void dequant_q4(const Q4View&, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out);
//       panels 16-column panels from p0, K values [k0, k0 + kc) (kc a multiple of the format's K step) into
//       out[kc * kNR * (p / (kNR / 16)) + kk * kNR + (p % (kNR / 16)) * 16 + c]; a micro-panel's columns past
//       the last panel are zero.
// (not a header guard: included once per ISA translation unit, inside a namespace)

// x rows [0, mr) x K values [0, kc) into [kc][kMR].
inline void pack_rows(const float* x, int64_t ldx, int mr, int64_t kc, float* out) {
  for (int r = 0; r < mr; ++r) {
    const float* src = x + r * ldx;
    for (int64_t kk = 0; kk < kc; ++kk) out[kk * kMR + r] = src[kk];
  }
}

template <typename View, typename Dequant>
void run_task(const View& w, const WoPanelTask& t, Dequant dequant) {
  const int64_t n_micro = (t.panels * 16 + kNR - 1) / kNR;
  for (int64_t k0 = 0; k0 < w.k; k0 += t.kc) {
    const int64_t kc_w = std::min(t.kc, w.kp - k0);  // weights dequantized (padded K included)
    const int64_t kc_x = std::min(t.kc, w.k - k0);   // activations read (real K only)
    const bool first = k0 == 0, last = k0 + t.kc >= w.k;
    dequant(w, t.p0, t.panels, k0, kc_w, t.panel);
    // Row blocks of balanced height (16 rows: 8 + 8, not 14 + 2: a short tile is load-bound).
    const int64_t n_rb = (t.m + kMR - 1) / kMR, rb = (t.m + n_rb - 1) / n_rb;
    for (int64_t r = 0; r < t.m; r += rb) {
      const int mr = static_cast<int>(std::min<int64_t>(rb, t.m - r));
      pack_rows(t.x + r * t.ldx + k0, t.ldx, mr, kc_x, t.apack);
      float* yr = t.y + r * t.ldy;
      for (int64_t j = 0; j < n_micro; ++j) {
        const int64_t c0 = j * kNR;
        if (c0 >= t.ncols) break;
        const int nc = static_cast<int>(std::min<int64_t>(kNR, t.ncols - c0));
        ukernel(mr, nc, kc_x, t.apack, t.panel + j * kc_w * kNR, yr + c0, t.ldy, !first,
                last && t.bias ? t.bias + c0 : nullptr);
      }
      if (last) apply_activation(t.ak, t.act, yr, mr, t.ncols, t.ldy);
    }
  }
}
