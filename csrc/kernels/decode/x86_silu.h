// The torch-order SiLU body over one vector width (included by x86_avx2.cc / x86_avx512.cc after their
// lane definitions: V, kLanes, the intrinsics wrappers below). Same operations as ref.cc, lane by lane.
inline V ts_exp(V d) {
  const V qf = vround(vmul(d, vset(kTsLog2e)));
  const VI q = vcvt(qf);
  V s = vfma(qf, vset(-kTsLn2Hi), d);
  s = vfma(qf, vset(-kTsLn2Lo), s);
  V u = vset(kTsP[0]);
  for (int i = 1; i < 6; ++i) u = vfma(u, s, vset(kTsP[i]));
  u = vadd(vset(1.0f), vfma(vmul(s, s), u, s));
  const VI h = vsrai1(q);
  u = vmul(vmul(u, vpow2i(h)), vpow2i(vsubi(q, h)));
  u = vlow_zero(d, u);               // d < -104: 0
  return vhigh_inf(d, u);            // 100 < d: infinity; NaN stays NaN (it went through every step)
}

inline void ts_silu(float* y, int64_t n) {
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const V x = vload(y + i);
    vstore(y + i, vdiv(x, vadd(vset(1.0f), ts_exp(vneg(x)))));
  }
  if (i < n) {
    alignas(64) float buf[kLanes] = {};
    for (int64_t j = i; j < n; ++j) buf[j - i] = y[j];
    const V x = vload(buf);
    vstore(buf, vdiv(x, vadd(vset(1.0f), ts_exp(vneg(x)))));
    for (int64_t j = i; j < n; ++j) y[j] = buf[j - i];
  }
}
