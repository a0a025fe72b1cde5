// The fp32 dot-product micro-kernels of the lowrank family, written once over the vector helpers of
// common/simd/x86_<isa>.h or arm_neon.h (V, W, vload, vload_n, vfma, hsum4) and included by each ISA file inside its own
// namespace. (not a header guard: included once per ISA translation unit, inside a namespace)
//
// Each accumulator holds W partial sums of one (row of x, row of w) pair; per step of W along k, MR loads of
// x and NR loads of w feed MR * NR FMAs. The tail (k % W) uses masked loads: nothing past k is read. The
// MR * NR sums are folded once at the end (hsum4: four vectors -> four totals).

template <int MR, int NR>
void dot(int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw, const float* bias, float* y,
         int64_t ldy) {
  V acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = vzero();
  int64_t c = 0;
  for (; c + W <= k; c += W) {
    V xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = vload(x + i * ldx + c);
    for (int j = 0; j < NR; ++j) {
      const V wv = vload(w + j * ldw + c);
      for (int i = 0; i < MR; ++i) acc[i][j] = vfma(xv[i], wv, acc[i][j]);
    }
  }
  if (c < k) {
    const int rest = int(k - c);
    V xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = vload_n(x + i * ldx + c, rest);
    for (int j = 0; j < NR; ++j) {
      const V wv = vload_n(w + j * ldw + c, rest);
      for (int i = 0; i < MR; ++i) acc[i][j] = vfma(xv[i], wv, acc[i][j]);
    }
  }
  constexpr int NR4 = (NR + 3) / 4 * 4;
  const V zero = vzero();
  for (int i = 0; i < MR; ++i) {
    alignas(16) float s[NR4];
    for (int j = 0; j < NR4; j += 4) {
      const auto v = hsum4(acc[i][j], j + 1 < NR ? acc[i][j + 1] : zero, j + 2 < NR ? acc[i][j + 2] : zero,
                           j + 3 < NR ? acc[i][j + 3] : zero);
      __builtin_memcpy(s + j, &v, sizeof v);  // four totals (an __m128 on x86, a float32x4_t on NEON)
    }
    float* yi = y + i * ldy;
    for (int j = 0; j < NR; ++j) yi[j] = bias ? s[j] + bias[j] : s[j];
  }
}

using Fn = void (*)(int64_t, const float*, int64_t, const float*, int64_t, const float*, float*, int64_t);

// GEMV form: mr rows one at a time, nr <= 8 outputs per call.
inline void gemv_1x8(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                     const float* bias, float* y, int64_t ldy) {
  static constexpr Fn kFns[8] = {&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>,
                                 &dot<1, 5>, &dot<1, 6>, &dot<1, 7>, &dot<1, 8>};
  for (int i = 0; i < mr; ++i) kFns[nr - 1](k, x + i * ldx, ldx, w, ldw, bias, y + i * ldy, ldy);
}

// Tile form: mr <= 4 rows of x (the kernel's MR: 3 on AVX2, whose 16 registers hold 3 x 4 accumulators, 4 on
// AVX-512) against nr <= 4 rows of w in one call.
inline void tile_x4(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                    const float* bias, float* y, int64_t ldy) {
  static constexpr Fn kFns[4][4] = {{&dot<1, 1>, &dot<1, 2>, &dot<1, 3>, &dot<1, 4>},
                                    {&dot<2, 1>, &dot<2, 2>, &dot<2, 3>, &dot<2, 4>},
                                    {&dot<3, 1>, &dot<3, 2>, &dot<3, 3>, &dot<3, 4>},
                                    {&dot<4, 1>, &dot<4, 2>, &dot<4, 3>, &dot<4, 4>}};
  kFns[mr - 1][nr - 1](k, x, ldx, w, ldw, bias, y, ldy);
}
