// The aarch64 pieces the q8 (qgemm) and q4 (q4gemm) kernels share: column-tail loads and stores and the
// q8 epilogue over one 16-column panel, held as 4 int32x4 / float32x4 quarters (columns 4q..4q+3) per row.
// Include inside the ISA file's own namespace, after <arm_neon.h>, <cstring> and <type_traits> (ODR-safe: every ISA file gets its own copy).
// (not a header guard: included once per ISA translation unit, inside a namespace)

inline float32x4_t load_cols(const float* p, int64_t ncols) {
  if (ncols >= 4) return vld1q_f32(p);
  float t[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  for (int64_t c = 0; c < ncols; ++c) t[c] = p[c];
  return vld1q_f32(t);
}

inline void store_cols(float* y, float32x4_t v, int64_t ncols) {
  if (ncols >= 4) {
    vst1q_f32(y, v);
  } else if (ncols > 0) {
    float t[4];
    vst1q_f32(t, v);
    for (int64_t c = 0; c < ncols; ++c) y[c] = t[c];
  }
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

// y = a_scale * (f - zp * comp) + bias (the comp term only with several groups), columns < e.ncols. E is
// Q8Epilogue or Q4Epilogue (same field names).
template <int MR, typename E>
inline void dyn_store(const E& e, int mr, const float32x4_t (&f)[MR][4]) {
  for (int q = 0; q < 4; ++q) {
    const int64_t nc = e.ncols - 4 * q;
    if (nc <= 0) break;
    const float32x4_t bias = e.bias ? load_cols(e.bias + 4 * q, nc) : vdupq_n_f32(0.0f);
    const float32x4_t comp = vld1q_f32(e.comp + 4 * q);
    for (int m = 0; m < MR && m < mr; ++m) {
      float32x4_t r = f[m][q];
      if (e.n_groups != 1) r = vfmsq_f32(r, vdupq_n_f32(float(e.a_zp[m])), comp);
      store_cols(e.y + m * e.ldy + 4 * q, vfmaq_f32(bias, r, vdupq_n_f32(e.a_scale[m])), nc);
    }
  }
}

// Weight-only: y = out + bias, columns < e.ncols.
template <int MR, typename E>
inline void wo_store(const E& e, int mr, const float32x4_t (&out)[MR][4]) {
  for (int q = 0; q < 4; ++q) {
    const int64_t nc = e.ncols - 4 * q;
    if (nc <= 0) break;
    const float32x4_t bias = e.bias ? load_cols(e.bias + 4 * q, nc) : vdupq_n_f32(0.0f);
    for (int m = 0; m < MR && m < mr; ++m) store_cols(e.y + m * e.ldy + 4 * q, vaddq_f32(out[m][q], bias), nc);
  }
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
