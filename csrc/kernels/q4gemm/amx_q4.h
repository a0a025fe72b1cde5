// The AMX-INT8 W4A8 dynamic kernel body (u8 activations x 4-bit codes, tdpbusd), written once over
// common/simd/x86_amx.h's Tiles and compiled twice: x86_amx.cc (the real instructions, amx flags) and
// amx_emu.cc (the portable emulation, test-only). Include inside the file's own namespace after x86_amx.h
// and x86_amx_blocks.h (ODR safety); needs formats/q4.h and kernels/q4gemm/q4gemm.h.
// (not a header guard: included once per translation unit, inside a namespace)
//
// Unpacking in L1. A q4 panel (formats/q4.h) stores K in steps of 8, each step 64 bytes: byte c*4 + j holds
// k = 8s + j in its low nibble and k = 8s + 4 + j in its high one. So the low nibbles of a step are one
// 64-byte row of tdpbusd's B operand (the VNNI layout of q8: 16 columns x 4 k) and the high nibbles the next
// row: per 64 K of a panel, 8 steps (512 bytes) become one 16 x 64 B tile of codes 0..15 (valid s8) with one
// `and 0x0F` and one `shift 4, and 0x0F` per step into a 1 KiB stack buffer, then tileloadd from there. The
// unpack uses GCC vector extensions: the same source is AVX-512 in the real kernel (vpandq / vpsrlw on zmm)
// and baseline SSE2 in the emulated twin, so the tests exercise the code that the real kernel runs.
//
// Arithmetic: the VNNI kernel's (x86_avx512vnni.cc), in the same order, so the outputs are the same bits.
// Codes stay unsigned; per group the accumulators hold dot_g(a, u) exactly, and the weights' zero point is
// removed in int32 (E_g = dot_g - z_g * asum_g, z = 8 when symmetric or float zero points, whose offset term
// the driver adds). Per channel: y = fma(float(E - zp * colsum), scale * a_scale, bias); grouped:
// facc = fma(float(E_g), scale_g, facc), then y = fma(fma(-zp, comp, facc), a_scale, bias). int32 sums wrap
// (uint32 arithmetic), as vpdpbusd / tdpbusd do; q4.h's kQ4MaxK keeps them exact.
//
// Tiles (x86_amx_blocks.h, shared with the q8 AMX kernel): 0..3 accumulators C[h][j] (row half h, panel j of
// the pair), 4..5 A (row halves), 6..7 B (the pair's unpacked panels). One call: mr <= 32 rows by `panels`
// panels over the whole of K, a pair of panels at a time, one group at a time.
//  - K step: 64 bytes when every group is a whole number of 64-K pieces (per channel, or a group size that is
//    a multiple of 64); 32 otherwise (group sizes are multiples of 32), so no piece straddles a group. The
//    tile config holds it (A: kstep bytes per row; B: kstep / 4 rows).
//  - K tail (kp, a multiple of 8, not one of kstep; only at the end of K): A's last piece is copied into a
//    zero-filled buffer (nothing past kp is read), B's unpack fills its missing rows with zeros.
//  - M tail: the config is made per call for mr; N tail: panels are zero-padded in the blob, the epilogue
//    writes only e.ncols columns.

constexpr int kAmxQ4Mr = 32;

struct AmxQ4Buffers {
  alignas(64) int32_t c[kAmxQ4Mr][32];       // the four accumulators, stored
  alignas(64) uint8_t a_tail[kAmxQ4Mr][64];  // last K piece of A, zero-filled
  alignas(64) uint8_t b[2][16][64];          // the pair's unpacked panels (one K step)
  alignas(64) float facc[kAmxQ4Mr][32];      // grouped: fp32 sums over groups
};

typedef uint8_t AmxQ4Bytes64 __attribute__((vector_size(64)));

// Unpacks `steps` (1..8) 8-k steps of one panel, from w (64 bytes each), into rows 0 .. 2 * steps - 1 of
// out; rows up to rows_total - 1 are zeroed.
inline void amx_q4_unpack(const uint8_t* w, int steps, int rows_total, uint8_t (*out)[64]) {
  for (int s = 0; s < steps; ++s) {
    AmxQ4Bytes64 v;
    std::memcpy(&v, w + s * 64, 64);
    const AmxQ4Bytes64 lo = v & 0x0F, hi = (v >> 4) & 0x0F;  // the scalar is broadcast
    std::memcpy(out[2 * s], &lo, 64);
    std::memcpy(out[2 * s + 1], &hi, 64);
  }
  for (int r = 2 * steps; r < rows_total; ++r) std::memset(out[r], 0, 64);
}

// buf.c = E_g over k in [k0, k1) (multiples of 8; a piece shorter than kstep only where k1 == kp) for the
// pair of panels at w0 / w1: raw dot products, then the weights' zero-point term of group g removed.
template <bool kTwoHalves, bool kTwoPanels>
inline void amx_q4_group(Tiles& t, int mr, int kstep, const uint8_t* a, int64_t lda, const uint8_t* w0,
                         const uint8_t* w1, int64_t g, int64_t k0, int64_t k1, const Q4Epilogue& e,
                         AmxQ4Buffers& buf) {
  amx_zero_2x2<kTwoHalves, kTwoPanels>(t);
  const int full_rows = kstep / 4;
  for (int64_t k = k0; k < k1; k += kstep) {
    const int64_t len = k1 - k < kstep ? k1 - k : kstep;  // multiple of 8
    const int steps = int(len / 8);
    amx_q4_unpack(w0 + k * 8, steps, full_rows, buf.b[0]);
    if (kTwoPanels) amx_q4_unpack(w1 + k * 8, steps, full_rows, buf.b[1]);
    const uint8_t* ak = a + k;
    int64_t ldak = lda;
    if (len < kstep) {
      std::memset(buf.a_tail, 0, sizeof(buf.a_tail));
      for (int m = 0; m < mr; ++m) std::memcpy(buf.a_tail[m], a + m * lda + k, size_t(len));
      ak = &buf.a_tail[0][0];
      ldak = 64;
    }
    amx_dpbusd_2x2<kTwoHalves, kTwoPanels>(t, ak, ldak, &buf.b[0][0][0], &buf.b[1][0][0], 64);
  }
  amx_store_2x2<kTwoHalves, kTwoPanels>(t, buf.c);
  const int ncol = kTwoPanels ? 32 : 16;
  for (int m = 0; m < mr; ++m) {
    const uint32_t asum = uint32_t(e.a_sum[m * e.n_groups + g]);
    for (int j = 0; j < ncol; ++j) {
      const uint32_t z = e.zeros ? e.zeros[((j / 16) * e.n_groups + g) * 16 + j % 16] : 8u;
      buf.c[m][j] = int32_t(uint32_t(buf.c[m][j]) - z * asum);
    }
  }
}

// Walks the groups of the pair (panel pp, pp + 1 of the call), calling fn(g) after each group's E_g is in buf.c.
template <bool kTwoHalves, bool kTwoPanels, typename Fn>
inline void amx_q4_groups(Tiles& t, int mr, int kstep, int pp, const uint8_t* a, int64_t lda, const uint8_t* w,
                          int64_t kp, const Q4Epilogue& e, AmxQ4Buffers& buf, Fn&& fn) {
  const uint8_t* w0 = w + int64_t(pp) * 8 * kp;
  const uint8_t* w1 = w0 + 8 * kp;
  Q4Epilogue ep = e;  // zero points from panel pp on
  if (e.zeros) ep.zeros = e.zeros + int64_t(pp) * e.n_groups * 16;
  const int64_t gk = e.n_groups == 1 ? kp : e.group_k8 * 8;
  for (int64_t g = 0; g < e.n_groups; ++g) {
    const int64_t k0 = g * gk, k1 = k0 + gk < kp ? k0 + gk : kp;
    amx_q4_group<kTwoHalves, kTwoPanels>(t, mr, kstep, a, lda, w0, w1, g, k0, k1, ep, buf);
    fn(g);
  }
}

// The pair's 32 (or 16) scales of group g as fp32, columns of the call from c0 = pp * 16.
inline void amx_q4_scales(const Q4Epilogue& e, int pp, int64_t g, int ncol, float* out) {
  for (int j = 0; j < ncol; ++j)
    out[j] = q4_scale_to_f32(e.scales, e.scale_dtype, ((pp + j / 16) * e.n_groups + g) * 16 + j % 16);
}

template <bool kTwoHalves, bool kTwoPanels>
inline void amx_q4_dyn_pair(Tiles& t, int mr, int kstep, int pp, const uint8_t* a, int64_t lda, const uint8_t* w,
                            int64_t kp, const Q4Epilogue& e, AmxQ4Buffers& buf) {
  const int64_t c0 = int64_t(pp) * 16;
  const int64_t rem = e.ncols - c0;
  const int ncol = kTwoPanels ? 32 : 16;
  const int cols = rem < ncol ? int(rem) : ncol;
  float s[32];
  if (e.n_groups == 1) {
    amx_q4_groups<kTwoHalves, kTwoPanels>(t, mr, kstep, pp, a, lda, w, kp, e, buf, [](int64_t) {});
    amx_q4_scales(e, pp, 0, ncol, s);
    for (int m = 0; m < mr; ++m) {
      const uint32_t zp = uint32_t(e.a_zp[m]);
      float* y = e.y + m * e.ldy + c0;
      for (int j = 0; j < cols; ++j) {
        const int32_t exact = int32_t(uint32_t(buf.c[m][j]) - zp * uint32_t(e.colsum[c0 + j]));
        y[j] = std::fma(float(exact), s[j] * e.a_scale[m], e.bias ? e.bias[c0 + j] : 0.0f);
      }
    }
    return;
  }
  for (int m = 0; m < mr; ++m)
    for (int j = 0; j < 32; ++j) buf.facc[m][j] = 0.0f;
  amx_q4_groups<kTwoHalves, kTwoPanels>(t, mr, kstep, pp, a, lda, w, kp, e, buf, [&](int64_t g) {
    amx_q4_scales(e, pp, g, ncol, s);
    amx_fold_group(buf.facc, buf.c, s, mr, cols);
  });
  amx_store_comp(e, buf.facc, mr, c0, cols);
}

// 64 when every group is whole 64-K pieces, else 32 (see the top).
inline int amx_q4_kstep(const Q4Epilogue& e) { return e.n_groups == 1 || e.group_k8 % 8 == 0 ? 64 : 32; }

// fn(halves, two, pp) for each pair of the call with columns left (halves, two: std::bool_constant).
template <typename Fn>
inline void amx_q4_pairs(int mr, int panels, int64_t ncols, Fn&& fn) {
  for (int pp = 0; pp < panels && int64_t(pp) * 16 < ncols; pp += 2) {
    const bool two = pp + 1 < panels;
    if (mr > 16 && two) fn(std::true_type{}, std::true_type{}, pp);
    else if (mr > 16) fn(std::true_type{}, std::false_type{}, pp);
    else if (two) fn(std::false_type{}, std::true_type{}, pp);
    else fn(std::false_type{}, std::false_type{}, pp);
  }
}

// The Q4DynUkernel: mr (1..32) rows by `panels` panels.
inline void amx_q4_dyn(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                       const Q4Epilogue& e) {
  if (mr <= 0 || panels <= 0) return;
  Tiles t;
  AmxQ4Buffers buf;
  const int kstep = amx_q4_kstep(e);
  amx_configure_2x2(t, mr, kstep);
  amx_q4_pairs(mr, panels, e.ncols, [&](auto halves, auto two, int pp) {
    amx_q4_dyn_pair<decltype(halves)::value, decltype(two)::value>(t, mr, kstep, pp, a, lda, w, kp, e, buf);
  });
  t.release();
}

// The Q4DotUkernel (test hook): E_g, out[m * ldo + g * e.np + c] for c < panels * 16.
inline void amx_q4_dot(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                       const Q4Epilogue& e, int32_t* out, int64_t ldo) {
  if (mr <= 0 || panels <= 0) return;
  Tiles t;
  AmxQ4Buffers buf;
  const int kstep = amx_q4_kstep(e);
  amx_configure_2x2(t, mr, kstep);
  amx_q4_pairs(mr, panels, int64_t(panels) * 16, [&](auto halves, auto two, int pp) {
    constexpr bool kTwo = decltype(two)::value;
    amx_q4_groups<decltype(halves)::value, kTwo>(t, mr, kstep, pp, a, lda, w, kp, e, buf, [&](int64_t g) {
      for (int m = 0; m < mr; ++m)
        for (int j = 0; j < (kTwo ? 32 : 16); ++j) out[m * ldo + g * e.np + pp * 16 + j] = buf.c[m][j];
    });
  });
  t.release();
}

// The exported kernel pair of one compilation of this body (in namespace slimnn, after the file's own
// namespace `ns` is closed): name (Q4DynUkernel) and name_dot (Q4DotUkernel).
#define SLIMNN_AMX_Q4_EXPORTS(ns, name)                                                                  \
  SLIMNN_AMX_DYN_EXPORTS(name, ns::amx_q4_dyn, uint8_t, Q4Epilogue, ns::amx_q4_dot,                      \
                         (int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp, \
                          const Q4Epilogue& e, int32_t* out, int64_t ldo), (mr, panels, a, lda, w, kp, e, out, ldo))
