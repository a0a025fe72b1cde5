// The torch-order SiLU body over one vector width: included by x86_avx2.cc / x86_avx512.cc inside their
// ISA namespace, after common/simd/x86_<isa>.h (V, W, vfma, vscale_pow2, ...) and torch_silu.inc. Same
// operations as ref.cc, lane by lane. (not a header guard: included once per ISA translation unit)

// exp(d) = 2^q (1 + s + s^2 P(s)). vscale_pow2 multiplies by 2^q as ref.cc's two exact power-of-two factors
// on AVX2 and by scalef on AVX-512: both round u * 2^q once (u * 2^(q/2) is exact), so the bits agree.
inline V ts_exp(V d) {
  const V q = vround(vmul(d, vset1(kTsLog2e)));
  V s = vfma(q, vset1(-kTsLn2Hi), d);
  s = vfma(q, vset1(-kTsLn2Lo), s);
  V u = vset1(kTsP[0]);
  for (int i = 1; i < 6; ++i) u = vfma(u, s, vset1(kTsP[i]));
  u = vadd(vset1(1.0f), vfma(vmul(s, s), u, s));
  u = vscale_pow2(u, q);
  u = vselect(vgt(vset1(kTsLow), d), vzero(), u);                     // d < -104: 0
  return vselect(vgt(d, vset1(kTsHigh)), vset1(__builtin_inff()), u);  // 100 < d: infinity; NaN stays NaN
}

inline V ts_silu_v(V x) { return vdiv(x, vadd(vset1(1.0f), ts_exp(vneg(x)))); }

inline void ts_silu(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(y + i, ts_silu_v(vload(y + i)));
  if (i < n) {
    const int t = static_cast<int>(n - i);
    vstore_n(y + i, ts_silu_v(vload_n(y + i, t)), t);
  }
}
