// The activation kernels on x86, written once over common/simd/x86_<isa>.h (V, W, masks, vselect, tails)
// and included by each ISA file inside its own namespace, after coeffs.inc. The formulas and operation
// order are those of act.cc's portable kernel (bit-identical results; these files are compiled with
// -ffp-contract=off so that no compiler-made FMA changes a rounding). The tail is a masked load / store of
// the same code. (not a header guard: included once per ISA translation unit, inside a namespace)

inline V c(float v) { return vset1(v); }

// exp(v) for v <= 0 without the flush (see act.h): callers flush where v < kExpMin.
inline V exp_neg_raw(V v) {
  const V vc = vmax(v, c(kExpMin));
  const V n = vround(vmul(vc, c(kLog2e)));
  V r = vfma(n, c(-kLn2Hi), vc);
  r = vfma(n, c(-kLn2Lo), r);
  V p = c(kExpP[4]);
  p = vfma(p, r, c(kExpP[3]));
  p = vfma(p, r, c(kExpP[2]));
  p = vfma(p, r, c(kExpP[1]));
  p = vfma(p, r, c(kExpP[0]));
  const V r2 = vmul(r, r);
  const V e = vadd(vfma(r2, p, r), c(1.0f));
  return vscale_pow2_normal(e, n);  // n >= -126: an exact product, like the portable path's multiply
}

inline V gelu(V x) {
  const V q = vmul(x, x);
  const V qlo = vfms(x, x, q);
  const V v = vmul(q, c(-0.5f)), vlo = vmul(qlo, c(0.5f));  // -z^2 = v - vlo exactly
  V e = exp_neg_raw(v);
  e = vfnma(e, vlo, e);  // exp(v - vlo) ~ e (1 - vlo)
  e = vselect(vgt(q, c(-2.0f * kExpMin)), vzero(), e);
  const V z = vmul(vabs(x), c(kInvSqrt2));
  const V t = vdiv(c(1.0f), vfma(c(kErfcP), z, c(1.0f)));
  V cq = c(kErfcQHalf[9]);
  for (int i = 8; i >= 0; --i) cq = vfma(cq, t, c(kErfcQHalf[i]));
  const V h = vmul(e, vmul(t, cq));  // erfc(z) / 2
  return vmul(x, vselect(vge(x, vzero()), vsub(c(1.0f), h), h));
}

// x * sigmoid(w), from e = exp(-|w|).
inline V x_sigmoid(V x, V w) {
  const V aw = vabs(w);
  V e = exp_neg_raw(vsub(vzero(), aw));
  e = vselect(vgt(aw, c(-kExpMin)), vzero(), e);
  const V num = vselect(vge(w, vzero()), x, vmul(x, e));
  return vdiv(num, vadd(c(1.0f), e));
}

inline V gelu_tanh(V x) {
  const V inner = vfma(c(kGeluTanhK3), vmul(x, x), c(kGeluTanhK1));
  return x_sigmoid(x, vmul(x, inner));
}

template <int kAct>
inline V apply(V x) {
  if (kAct == int(Activation::kRelu)) return vmax(vzero(), x);
  if (kAct == int(Activation::kGelu)) return gelu(x);
  if (kAct == int(Activation::kGeluTanh)) return gelu_tanh(x);
  return x_sigmoid(x, x);
}

template <int kAct>
void run(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(y + i, apply<kAct>(vload(y + i)));
  if (i < n) vstore_n(y + i, apply<kAct>(vload_n(y + i, int(n - i))), int(n - i));
}

inline void act_run(int act, float* y, int64_t n) {
  switch (static_cast<Activation>(act)) {
    case Activation::kRelu: return run<int(Activation::kRelu)>(y, n);
    case Activation::kGelu: return run<int(Activation::kGelu)>(y, n);
    case Activation::kGeluTanh: return run<int(Activation::kGeluTanh)>(y, n);
    case Activation::kSilu: return run<int(Activation::kSilu)>(y, n);
    default: return;
  }
}
