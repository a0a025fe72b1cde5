// What x86_avx2.h and x86_avx512.h write once for both widths: the element-wise fp32 arithmetic (from
// the including header's SLIMNN_MM(op), the intrinsic of its width) and the sums built on its half4.
// (not a header guard: included by those two headers, inside the ISA file's namespace)

inline V vfma(V a, V b, V c) { return SLIMNN_MM(fmadd_ps)(a, b, c); }
inline V vfms(V a, V b, V c) { return SLIMNN_MM(fmsub_ps)(a, b, c); }     // a * b - c
inline V vfnma(V a, V b, V c) { return SLIMNN_MM(fnmadd_ps)(a, b, c); }   // c - a * b
inline V vmul(V a, V b) { return SLIMNN_MM(mul_ps)(a, b); }
inline V vdiv(V a, V b) { return SLIMNN_MM(div_ps)(a, b); }
inline V vadd(V a, V b) { return SLIMNN_MM(add_ps)(a, b); }
inline V vsub(V a, V b) { return SLIMNN_MM(sub_ps)(a, b); }
inline V vmax(V a, V b) { return SLIMNN_MM(max_ps)(a, b); }  // a > b ? a : b per lane (maxps: b when either is NaN)
inline V vmin(V a, V b) { return SLIMNN_MM(min_ps)(a, b); }
inline V vneg(V a) { return SLIMNN_MM(xor_ps)(a, SLIMNN_MM(set1_ps)(-0.0f)); }  // sign bit flipped (NaN too)

// Reductions: the 4 lanes of half4 (x86_avx2.h: (x0 + x4 + x2 + x6) + (x1 + x5 + x3 + x7), fixed order).
inline float hsum(V x) {
  __m128 s = half4(x);
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}
// Four vectors -> their four totals (lanes folded pairwise to 4, then two hadds).
inline __m128 hsum4(V a, V b, V c, V d) {
  return _mm_hadd_ps(_mm_hadd_ps(half4(a), half4(b)), _mm_hadd_ps(half4(c), half4(d)));
}
