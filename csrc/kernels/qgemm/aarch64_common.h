// The aarch64 pieces the q8 (qgemm) and q4 (q4gemm) kernels share: column-tail loads and stores and the
// q8 epilogue over one 16-column panel, held as 4 int32x4 / float32x4 quarters (columns 4q..4q+3) per row.
// Include inside the ISA file's own namespace, after <arm_neon.h>, <cstring> and <type_traits> (ODR-safe: every ISA file gets its own copy).
// Also the pieces the q8 and q4 kernels would otherwise each write: the mlal-lane step, the MMLA
// unscramble, the rows of a 4-row MMLA block, and the exported dyn / dot-hook entries (macros).
// (not a header guard: included once per ISA translation unit, inside a namespace)

#include "common/simd/arm_neon.h"

// Column tails: the first ncols floats (arm_neon.h's vload_n / vstore_n: nothing touched past them).
inline float32x4_t load_cols(const float* p, int64_t ncols) { return vload_n(p, ncols >= 4 ? 4 : int(ncols)); }
inline void store_cols(float* y, float32x4_t v, int64_t ncols) {
  if (ncols > 0) vstore_n(y, v, ncols >= 4 ? 4 : int(ncols));
}

// Four bytes of p (unaligned) in lane 0..3 of every 32-bit lane.
inline uint32x4_t bcast_u8x4(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return vdupq_n_u32(v);
}

// q8 dyn epilogue, group g: d[m][q] holds the group's dot products of row m, columns 4q..4q+3, each equal to
// the true u8 x s8 dot minus a_off * colsum (the dotprod kernels compute (a - 128) x w: a_off = 128).
// Per channel the zero-point term is removed in int32 with wrapping arithmetic, like ref.cc.
template <int MR>
inline void q8_group(const Q8Epilogue& e, int64_t g, int mr, int32_t a_off, const int32x4_t (&d)[MR][4],
                     float32x4_t (&f)[MR][4]) {
  for (int q = 0; q < 4; ++q) {
    const int32x4_t cs = vld1q_s32(e.colsum + g * e.np + 4 * q);
    if (e.n_groups == 1) {
      const float32x4_t sw = vld1q_f32(e.scales + 4 * q);
      for (int m = 0; m < MR && m < mr; ++m) {
        const int32x4_t exact = vmlaq_s32(d[m][q], vdupq_n_s32(a_off - e.a_zp[m]), cs);
        f[m][q] = vmulq_f32(vcvtq_f32_s32(exact), sw);
      }
    } else {
      const float32x4_t sg = vld1q_f32(e.scales + g * e.np + 4 * q);
      for (int m = 0; m < MR && m < mr; ++m) {
        const int32x4_t dg = a_off ? vmlaq_s32(d[m][q], vdupq_n_s32(a_off), cs) : d[m][q];
        f[m][q] = vfmaq_f32(f[m][q], vcvtq_f32_s32(dg), sg);
      }
    }
  }
}

// Calls f(q, nc, bias) for the column quarters q of the panel that hold output columns (nc of them, up to 4;
// bias: those columns of e.bias, or zeros).
template <typename E, typename F>
inline void for_quarters(const E& e, F f) {
  for (int q = 0; q < 4 && e.ncols - 4 * q > 0; ++q) {
    const int64_t nc = e.ncols - 4 * q;
    f(q, nc, e.bias ? load_cols(e.bias + 4 * q, nc) : vdupq_n_f32(0.0f));
  }
}

// y = a_scale * (f - zp * comp) + bias (the comp term only with several groups), columns < e.ncols. E is
// Q8Epilogue or Q4Epilogue (same field names).
template <int MR, typename E>
inline void dyn_store(const E& e, int mr, const float32x4_t (&f)[MR][4]) {
  for_quarters(e, [&](int q, int64_t nc, float32x4_t bias) {
    const float32x4_t comp = vld1q_f32(e.comp + 4 * q);
    for (int m = 0; m < MR && m < mr; ++m) {
      float32x4_t r = f[m][q];
      if (e.n_groups != 1) r = vfmsq_f32(r, vdupq_n_f32(float(e.a_zp[m])), comp);
      store_cols(e.y + m * e.ldy + 4 * q, vfmaq_f32(bias, r, vdupq_n_f32(e.a_scale[m])), nc);
    }
  });
}

// Weight-only: y = out + bias, columns < e.ncols.
template <int MR, typename E>
inline void wo_store(const E& e, int mr, const float32x4_t (&out)[MR][4]) {
  for_quarters(e, [&](int q, int64_t nc, float32x4_t bias) {
    for (int m = 0; m < MR && m < mr; ++m) store_cols(e.y + m * e.ldy + 4 * q, vaddq_f32(out[m][q], bias), nc);
  });
}

template <int MR>
inline void zero_f(float32x4_t (&f)[MR][4]) {
  for (int m = 0; m < MR; ++m)
    for (int q = 0; q < 4; ++q) f[m][q] = vdupq_n_f32(0.0f);
}

// Calls f(g, s0, s1) for each group g of `group_steps` K steps (the last one cut at n_steps).
template <typename F>
inline void for_groups(int64_t n_groups, int64_t group_steps, int64_t n_steps, F f) {
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t s0 = g * group_steps, s1 = s0 + group_steps < n_steps ? s0 + group_steps : n_steps;
    f(g, s0, s1);
  }
}

// Calls f(std::integral_constant<int, R>()) with R = mr (1..4): the row count as a template argument.
template <typename F>
inline void by_rows(int mr, F f) {
  if (mr >= 4)
    f(std::integral_constant<int, 4>());
  else if (mr == 3)
    f(std::integral_constant<int, 3>());
  else if (mr == 2)
    f(std::integral_constant<int, 2>());
  else
    f(std::integral_constant<int, 1>());
}

template <int MR>
inline void zero_acc(int32x4_t (&d)[MR][4]) {
  for (int m = 0; m < MR; ++m)
    for (int q = 0; q < 4; ++q) d[m][q] = vdupq_n_s32(0);
}

// The q8 dyn kernel over a dot routine: dot(k4_0, k4_1, d) adds the MR rows' dot products over those 4-k
// steps to d (zeroed here), which are the true ones minus a_off * colsum (see q8_group).
template <int MR, typename Dot>
inline void q8_dyn(const Q8Epilogue& e, int mr, int64_t kp, int32_t a_off, Dot dot) {
  float32x4_t f[MR][4];
  zero_f<MR>(f);
  for_groups(e.n_groups, e.group_k4, kp / 4, [&](int64_t g, int64_t s0, int64_t s1) {
    int32x4_t d[MR][4];
    zero_acc<MR>(d);
    dot(s0, s1, d);
    q8_group<MR>(e, g, mr, a_off, d, f);
  });
  dyn_store<MR>(e, mr, f);
}

// q8_dyn with its activation offset as a template argument (SLIMNN_ARM_DYN_ENTRY's DYN form).
template <int MR, int32_t AOff, typename Dot>
inline void q8_dyn_off(const Q8Epilogue& e, int mr, int64_t kp, Dot dot) {
  q8_dyn<MR>(e, mr, kp, AOff, dot);
}

// The mlal-lane step of the NEON floor kernels (XNNPACK's neon-mlal-lane GEMMs): lane J of the widened
// activations times the 16 widened weights of k = J (w16[J][0]: columns 0..7, [1]: 8..15) into 4 column
// quarters. q8: s16 x s16 -> s32 (a in 4 lanes); q4: u16 x u16 -> u32 (a in 8 lanes).
template <int J>
inline int32x4_t mlal_lane(int32x4_t acc, int16x4_t w, int16x4_t a) { return vmlal_lane_s16(acc, w, a, J); }
template <int J>
inline uint32x4_t mlal_lane(uint32x4_t acc, uint16x4_t w, uint16x8_t a) { return vmlal_laneq_u16(acc, w, a, J); }
inline int16x4_t lo4(int16x8_t v) { return vget_low_s16(v); }
inline uint16x4_t lo4(uint16x8_t v) { return vget_low_u16(v); }
inline int16x4_t hi4(int16x8_t v) { return vget_high_s16(v); }
inline uint16x4_t hi4(uint16x8_t v) { return vget_high_u16(v); }
template <int J, typename Acc, typename W16, int NK, typename A>
inline void mlal_k(Acc (&acc)[4], const W16 (&w16)[NK][2], A a) {
  acc[0] = mlal_lane<J>(acc[0], lo4(w16[J][0]), a);
  acc[1] = mlal_lane<J>(acc[1], hi4(w16[J][0]), a);
  acc[2] = mlal_lane<J>(acc[2], lo4(w16[J][1]), a);
  acc[3] = mlal_lane<J>(acc[3], hi4(w16[J][1]), a);
}

// MMLA results back to rows: acc[p][2q + h] holds the 2 x 2 block (rows 2p, 2p+1) x (columns 4q + 2h, +1);
// d[2p][q] = columns 4q..4q+3 of row 2p, d[2p+1][q] of row 2p+1.
template <int MP>
inline void unscramble(const int32x4_t (&acc)[MP][8], int32x4_t (&d)[2 * MP][4]) {
  for (int p = 0; p < MP; ++p)
    for (int q = 0; q < 4; ++q) {
      const int64x2_t x = vreinterpretq_s64_s32(acc[p][2 * q]), y = vreinterpretq_s64_s32(acc[p][2 * q + 1]);
      d[2 * p][q] = vreinterpretq_s32_s64(vzip1q_s64(x, y));
      d[2 * p + 1][q] = vreinterpretq_s32_s64(vzip2q_s64(x, y));
    }
}

// The 4 activation rows of an MMLA block: rows past mr repeat the last real one (their results are dropped).
inline void rows4(const uint8_t* a, int mr, int64_t lda, const uint8_t* (&rows)[4]) {
  for (int m = 0; m < 4; ++m) rows[m] = a + (m < mr ? m : mr - 1) * lda;
}

// The exported dyn kernel of an aarch64 ISA file (at namespace slimnn scope): NS::<the last arguments>
// over NS::dot_block<R>(a, lda, w, s0, s1, d), the row count R as a template argument; the last arguments
// name a routine taking (e, mr, kp, dot): q4_dyn<R>, or q8_dyn_off<R, a_off> (above).
#define SLIMNN_ARM_DYN_ENTRY(name, NS, WT, EPI, ...)                                                      \
  void name(int mr, int panels, const uint8_t* a, int64_t lda, const WT* w, int64_t kp, const EPI& e) {      \
    (void)panels; /* NP == 1 */                                                                               \
    NS::by_rows(mr, [&](auto r) {                                                                             \
      constexpr int R = decltype(r)::value;                                                                   \
      NS::__VA_ARGS__(e, mr, kp, [&](int64_t s0, int64_t s1, int32x4_t(&d)[R][4]) {                             \
        NS::dot_block<R>(a, lda, w, s0, s1, d);                                                               \
      });                                                                                                     \
    });                                                                                                       \
  }
