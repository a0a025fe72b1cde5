// The AMX-INT8 W8A8 dynamic kernel body, written once over common/simd/x86_amx.h's Tiles and compiled twice:
// x86_amx.cc (the real instructions, amx flags) and amx_emu.cc (the portable emulation, test-only).
// Include inside the file's own namespace after x86_amx.h and x86_amx_blocks.h (ODR safety).
// (not a header guard: included once per translation unit, inside a namespace)
//
// No repacking: the q8 layout (formats/q8.h) already is the B operand of tdpbusd. A panel stores K in steps
// of 4, each step 16 columns x 4 bytes = one 64-byte tile row, so 64 consecutive K of a panel (16 steps) are
// one 16 x 64 B tile at stride 64, contiguous (1 KiB), loaded straight from the blob.
//
// Tiles (x86_amx_blocks.h): 0..3 accumulators C[h][j] (row half h = rows 0-15 / 16-31, panel j of the pair),
// 4..5 A (the activation rows of each half, 64 K-bytes), 6..7 B (the pair's two panels). One call computes mr <= 32 rows
// by `panels` panels, a pair of panels at a time, over the whole of K:
//  - M tail: the tile config is made per call for mr (rows of A and C), so no row past mr is read or written;
//  - K tail (kp not a multiple of 64, or a group ending inside 64 bytes): the last piece of A (mr rows) and of
//    B (len / 4 rows) is copied into zero-filled 64-byte-wide buffers, so nothing past kp is read;
//  - N tail: panels are zero-padded to 16 columns in the blob; the epilogue writes only e.ncols columns.
// Groups (n_groups > 1): the accumulators are zeroed per group, stored and scaled in fp32 after each.
// The epilogue does the avx512vnni kernel's arithmetic with std::fma, in the same order: per channel
// y = fma(float(dot - zp * colsum), scale * a_scale, bias); grouped, acc = fma(float(dot_g), scale_g, acc),
// then y = fma(fma(-zp, comp, acc), a_scale, bias). So the two kernels' outputs are the same bits.

constexpr int kAmxMr = 32;

struct AmxBuffers {
  alignas(64) int32_t c[kAmxMr][32];           // the four accumulators, stored
  alignas(64) uint8_t a_tail[kAmxMr][64];      // last K piece of A, zero-filled
  alignas(64) int8_t b_tail[2][16][64];        // last K piece of the pair's panels, zero-filled
  alignas(64) float facc[kAmxMr][32];          // grouped: fp32 sums over groups
};

// One 64-byte K step of the pair: A rows from a (stride lda), B panels from b0 / b1 (stride 64).
template <bool kTwoHalves, bool kTwoPanels>
inline void amx_step(Tiles& t, const uint8_t* a, int64_t lda, const int8_t* b0, const int8_t* b1) {
  amx_dpbusd_2x2<kTwoHalves, kTwoPanels>(t, a, lda, b0, b1, 64);
}

// C = sum over k in [k0, k1) (multiples of 4) of A[., k] * W[k, .] for the pair of panels at w0 / w1, stored
// into buf.c (rows < mr, 16 columns per panel of the pair).
template <bool kTwoHalves, bool kTwoPanels>
inline void amx_dot_range(Tiles& t, int mr, const uint8_t* a, int64_t lda, const int8_t* w0, const int8_t* w1,
                          int64_t k0, int64_t k1, AmxBuffers& buf) {
  amx_zero_2x2<kTwoHalves, kTwoPanels>(t);
  int64_t k = k0;
  for (; k + 64 <= k1; k += 64) amx_step<kTwoHalves, kTwoPanels>(t, a + k, lda, w0 + k * 16, w1 + k * 16);
  if (k < k1) {
    const int64_t len = k1 - k;  // 4..60 bytes
    std::memset(buf.a_tail, 0, sizeof(buf.a_tail));
    std::memset(buf.b_tail, 0, sizeof(buf.b_tail));
    for (int m = 0; m < mr; ++m) std::memcpy(buf.a_tail[m], a + m * lda + k, len);
    std::memcpy(buf.b_tail[0], w0 + k * 16, len * 16);
    if (kTwoPanels) std::memcpy(buf.b_tail[1], w1 + k * 16, len * 16);
    amx_step<kTwoHalves, kTwoPanels>(t, &buf.a_tail[0][0], 64, &buf.b_tail[0][0][0], &buf.b_tail[1][0][0]);
  }
  amx_store_2x2<kTwoHalves, kTwoPanels>(t, buf.c);
}

template <bool kTwoHalves, bool kTwoPanels>
inline void amx_dyn_pair(Tiles& t, int mr, int pp, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                         const Q8Epilogue& e, AmxBuffers& buf) {
  const int8_t* w0 = w + int64_t(pp) * 16 * kp;
  const int8_t* w1 = w0 + 16 * kp;
  const int64_t c0 = int64_t(pp) * 16;
  const int64_t rem = e.ncols - c0;
  const int cols = rem < (kTwoPanels ? 32 : 16) ? int(rem) : (kTwoPanels ? 32 : 16);
  if (e.n_groups == 1) {
    amx_dot_range<kTwoHalves, kTwoPanels>(t, mr, a, lda, w0, w1, 0, kp, buf);
    for (int m = 0; m < mr; ++m) {
      const uint32_t zp = uint32_t(e.a_zp[m]);
      float* y = e.y + m * e.ldy + c0;
      for (int j = 0; j < cols; ++j) {
        const int32_t exact = int32_t(uint32_t(buf.c[m][j]) - zp * uint32_t(e.colsum[c0 + j]));
        const float s = e.scales[c0 + j] * e.a_scale[m];
        y[j] = std::fma(float(exact), s, e.bias ? e.bias[c0 + j] : 0.0f);
      }
    }
    return;
  }
  const int64_t gk = e.group_k4 * 4;
  for (int m = 0; m < mr; ++m)
    for (int j = 0; j < 32; ++j) buf.facc[m][j] = 0.0f;
  for (int64_t g = 0; g < e.n_groups; ++g) {
    const int64_t k0 = g * gk, k1 = k0 + gk < kp ? k0 + gk : kp;
    amx_dot_range<kTwoHalves, kTwoPanels>(t, mr, a, lda, w0, w1, k0, k1, buf);
    amx_fold_group(buf.facc, buf.c, e.scales + g * e.np + c0, mr, cols);
  }
  amx_store_comp(e, buf.facc, mr, c0, cols);
}

template <bool kTwoHalves>
inline void amx_dyn_rows(Tiles& t, int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                         const Q8Epilogue& e, AmxBuffers& buf) {
  for (int pp = 0; pp < panels && int64_t(pp) * 16 < e.ncols; pp += 2) {
    if (pp + 1 < panels)
      amx_dyn_pair<kTwoHalves, true>(t, mr, pp, a, lda, w, kp, e, buf);
    else
      amx_dyn_pair<kTwoHalves, false>(t, mr, pp, a, lda, w, kp, e, buf);
  }
}

// The Q8DynUkernel: mr (1..32) rows by `panels` panels.
inline void amx_q8_dyn(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                       const Q8Epilogue& e) {
  if (mr <= 0 || panels <= 0) return;
  Tiles t;
  AmxBuffers buf;
  amx_configure_2x2(t, mr, 64);
  if (mr > 16)
    amx_dyn_rows<true>(t, mr, panels, a, lda, w, kp, e, buf);
  else
    amx_dyn_rows<false>(t, mr, panels, a, lda, w, kp, e, buf);
  t.release();
}

// The Q8DotUkernel (test hook): raw int32 dot products over all of kp, out[m][c] for c < panels * 16.
inline void amx_q8_dot(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out,
                       int64_t ldo) {
  if (mr <= 0 || panels <= 0) return;
  Tiles t;
  AmxBuffers buf;
  amx_configure_2x2(t, mr, 64);
  for (int pp = 0; pp < panels; pp += 2) {
    const int8_t* w0 = w + int64_t(pp) * 16 * kp;
    const bool two = pp + 1 < panels;
    if (mr > 16 && two) amx_dot_range<true, true>(t, mr, a, lda, w0, w0 + 16 * kp, 0, kp, buf);
    else if (mr > 16) amx_dot_range<true, false>(t, mr, a, lda, w0, w0, 0, kp, buf);
    else if (two) amx_dot_range<false, true>(t, mr, a, lda, w0, w0 + 16 * kp, 0, kp, buf);
    else amx_dot_range<false, false>(t, mr, a, lda, w0, w0, 0, kp, buf);
    for (int m = 0; m < mr; ++m)
      for (int j = 0; j < (two ? 32 : 16); ++j) out[m * ldo + pp * 16 + j] = buf.c[m][j];
  }
  t.release();
}

// The exported kernel pair of one compilation of this body (in namespace slimnn, after the file's own
// namespace `ns` is closed): name (Q8DynUkernel) and name_dot (Q8DotUkernel).
#define SLIMNN_AMX_Q8_EXPORTS(ns, name)                                                                 \
  SLIMNN_AMX_DYN_EXPORTS(name, ns::amx_q8_dyn, int8_t, Q8Epilogue, ns::amx_q8_dot,                      \
                         (int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, \
                          int32_t* out, int64_t ldo), (mr, panels, a, lda, w, kp, out, ldo))
