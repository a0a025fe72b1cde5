// Elementwise math over the vector helpers of x86_avx2.h / x86_avx512.h (V, W, vfma, vscale_pow2, ...):
// include after one of them, inside the same ISA namespace. One source, every x86 width.
// (not a header guard: included once per ISA translation unit, inside a namespace)

// exp(x): x clamped to [-104, 89] (exp(-104) rounds to 0 in fp32, exp(89) overflows; the clamps keep NaN),
// n = round(x log2 e), r = x - n ln2 (ln2 split hi/lo, both by FMA, |r| <= ln2/2), exp(r) by its degree-7
// Taylor polynomial (truncation < 6e-9 relative, under half an ulp), then p * 2^n (vscale_pow2), rounding
// once into the subnormal range. Measured within 2 ulp of correctly rounded expf
// (tests/test_attention.py::test_exp_accuracy). Used by the attention kernels.
inline V vexp(V x) {
  x = vmax(vset1(-104.0f), x);  // (a > b ? a : b): a NaN x is kept
  x = vmin(vset1(89.0f), x);
  const V n = vround(vmul(x, vset1(1.44269504088896341f)));
  V r = vfnma(n, vset1(0.693145751953125f), x);
  r = vfnma(n, vset1(1.428606820309417232e-6f), r);
  V p = vset1(1.0f / 5040.0f);
  p = vfma(p, r, vset1(1.0f / 720.0f));
  p = vfma(p, r, vset1(1.0f / 120.0f));
  p = vfma(p, r, vset1(1.0f / 24.0f));
  p = vfma(p, r, vset1(1.0f / 6.0f));
  p = vfma(p, r, vset1(0.5f));
  p = vfma(p, r, vset1(1.0f));
  p = vfma(p, r, vset1(1.0f));
  return vscale_pow2(p, n);
}
