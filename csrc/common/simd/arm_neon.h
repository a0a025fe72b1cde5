// Advanced SIMD (NEON, aarch64) fp32 vector helpers: 4 lanes, the names and contracts of x86_avx2.h (read
// its header comment), so a family's template (act's x86_act.h, lowrank's x86_dot.h, attention's
// flash_tile.h, conv's dw_impl.inc, spmm's x86_batched.h, x86_math.h's vexp) compiles for NEON in one small
// aarch64_neon.cc. Include inside the ISA's own namespace of a file compiled with the neon flags
// (cmake/isa_flags.cmake), after <arm_neon.h>. (not a header guard: included once per ISA translation unit,
// inside a namespace)
//
// Same bits as the x86 helpers lane for lane: vfma / vfms / vfnma are fused (one rounding, like
// vfmadd/vfmsub/vfnmadd), vround is round-half-even (frintn = _MM_FROUND_TO_NEAREST_INT), vdiv is IEEE, and
// vmax / vmin keep x86's operand rule (a > b ? a : b, b when either is NaN; fmax would return the NaN), so
// a template that is bit-identical across the x86 widths is bit-identical here too. Masks (M) are
// all-ones / all-zero lanes. Tails: vload_n / vstore_n touch only the first n floats (NEON has no masked
// load: the tail goes through a 4-float stack buffer); loaded lanes >= n are zero.

using V = float32x4_t;
using M = uint32x4_t;
constexpr int W = 4;

inline M mask_n(int n) {
  const int32_t idx[4] = {0, 1, 2, 3};
  return vcltq_s32(vld1q_s32(idx), vdupq_n_s32(n));
}
inline M first_n(int n) { return mask_n(n); }
inline V vzero() { return vdupq_n_f32(0.0f); }
inline V vset1(float f) { return vdupq_n_f32(f); }
inline V vload(const float* p) { return vld1q_f32(p); }
inline V vloada(const float* p) { return vld1q_f32(p); }
inline void vstore(float* p, V x) { vst1q_f32(p, x); }
inline V vload_n(const float* p, int n) {
  if (n >= 4) return vld1q_f32(p);
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return vld1q_f32(t);
}
inline void vstore_n(float* p, V x, int n) {
  if (n >= 4) {
    vst1q_f32(p, x);
    return;
  }
  float t[4];
  vst1q_f32(t, x);
  for (int i = 0; i < n; ++i) p[i] = t[i];
}
// W int8 values widened to fp32 (reads exactly W bytes).
inline V vload_i8(const int8_t* p) {
  int32_t b;
  __builtin_memcpy(&b, p, 4);
  const int16x8_t h = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(b)));
  return vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
}
inline V vload_u8(const uint8_t* p) {  // W uint8 values widened to fp32 (reads exactly W bytes)
  uint32_t b;
  __builtin_memcpy(&b, p, 4);
  const uint16x8_t h = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(b)));
  return vcvtq_f32_u32(vmovl_u16(vget_low_u16(h)));
}
inline V vfma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
inline V vfms(V a, V b, V c) { return vfmaq_f32(vnegq_f32(c), a, b); }  // a * b - c (fused)
inline V vfnma(V a, V b, V c) { return vfmsq_f32(c, a, b); }           // c - a * b (fused)
inline V vmul(V a, V b) { return vmulq_f32(a, b); }
inline V vdiv(V a, V b) { return vdivq_f32(a, b); }
inline V vadd(V a, V b) { return vaddq_f32(a, b); }
inline V vsub(V a, V b) { return vsubq_f32(a, b); }
inline V vmax(V a, V b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }  // a > b ? a : b (x86 maxps)
inline V vmin(V a, V b) { return vbslq_f32(vcltq_f32(a, b), a, b); }  // a < b ? a : b (x86 minps)
inline V vneg(V a) { return vnegq_f32(a); }  // sign bit flipped (NaN too), as x86's xor with -0.0f
inline V vabs(V x) { return vabsq_f32(x); }
inline V vround(V x) { return vrndnq_f32(x); }
inline M vgt(V a, V b) { return vcgtq_f32(a, b); }  // ordered: false when either is NaN (_CMP_GT_OQ)
inline M vge(V a, V b) { return vcgeq_f32(a, b); }
inline V vselect(M m, V a, V b) { return vbslq_f32(m, a, b); }  // a where m is set, else b
inline V vfill_from(V x, int n, float f) { return vbslq_f32(mask_n(n), x, vdupq_n_f32(f)); }

// Reductions: hsum = (x0 + x2) + (x1 + x3), fixed order; hmax with vmax's operand rule.
inline float hmax(V x) {
  V m = vmax(x, vextq_f32(x, x, 2));
  m = vmax(m, vextq_f32(m, m, 1));
  return vgetq_lane_f32(m, 0);
}
inline float hsum(V x) {
  const V s = vaddq_f32(x, vextq_f32(x, x, 2));
  return vgetq_lane_f32(s, 0) + vgetq_lane_f32(s, 1);
}
// Four vectors -> their four totals ((x0 + x1) + (x2 + x3) each, by two pairwise adds).
inline float32x4_t hsum4(V a, V b, V c, V d) { return vpaddq_f32(vpaddq_f32(a, b), vpaddq_f32(c, d)); }

// x * 2^n for integral n (as floats) with 2^n normal (-126 <= n <= 127): one exact power-of-two product.
inline V pow2i(int32x4_t k) { return vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(k, vdupq_n_s32(127)), 23)); }
inline V vscale_pow2_normal(V x, V n) { return vmulq_f32(x, pow2i(vcvtnq_s32_f32(n))); }
// x * 2^n for integral n in [-150, 128]: as x86_avx2.h, two exact power-of-two factors 2^(n/2) and
// 2^(n - n/2), the second product rounding once, into the subnormal range when it must.
inline V vscale_pow2(V x, V n) {
  const int32x4_t ni = vcvtnq_s32_f32(n);  // NaN -> 0: the scale is then 1, and x is NaN already
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  const int32x4_t n2 = vsubq_s32(ni, n1);
  return vmulq_f32(vmulq_f32(x, pow2i(n1)), pow2i(n2));
}
