// The aarch64 q4 epilogue over one 16-column panel (4 quarters of 4 columns per row), shared by the Arm q4
// ISA files. Include inside the ISA file's own namespace after kernels/qgemm/aarch64_common.h.
// (not a header guard: included once per ISA translation unit, inside a namespace)

// 4 scales from index i of the panel's [n_groups][16] block, as fp32 (fp16 and bf16 widen exactly).
inline float32x4_t load_scales4(const void* base, ScaleDtype dt, int64_t i) {
  if (dt == ScaleDtype::kF32) return vld1q_f32(static_cast<const float*>(base) + i);
  const uint16x4_t h = vld1_u16(static_cast<const uint16_t*>(base) + i);
  if (dt == ScaleDtype::kF16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
  return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

// E_g = dot - z_g[col] * asum_g[row] of row m, columns 4q..4q+3, exactly in int32.
inline int32x4_t q4_exact(const Q4Epilogue& e, int64_t g, int m, int q, int32x4_t d) {
  const int32_t asum = e.a_sum[m * e.n_groups + g];
  if (e.zeros == nullptr) return vsubq_s32(d, vdupq_n_s32(8 * asum));
  const uint8_t* z = e.zeros + g * 16 + 4 * q;
  const int32_t zv[4] = {z[0], z[1], z[2], z[3]};
  return vmlsq_s32(d, vld1q_s32(zv), vdupq_n_s32(asum));
}

// Group g of the dyn epilogue: d[m][q] = raw u8 x u4 dot products (zero points not yet removed).
template <int MR>
inline void q4_group(const Q4Epilogue& e, int64_t g, int mr, const int32x4_t (&d)[MR][4], float32x4_t (&f)[MR][4]) {
  for (int q = 0; q < 4; ++q) {
    if (e.n_groups == 1) {
      const int32x4_t cs = vld1q_s32(e.colsum + 4 * q);
      const float32x4_t sw = load_scales4(e.scales, e.scale_dtype, 4 * q);
      for (int m = 0; m < MR && m < mr; ++m) {
        const int32x4_t exact = vmlsq_s32(q4_exact(e, 0, m, q, d[m][q]), vdupq_n_s32(e.a_zp[m]), cs);
        f[m][q] = vmulq_f32(vcvtq_f32_s32(exact), sw);
      }
    } else {
      const float32x4_t sg = load_scales4(e.scales, e.scale_dtype, g * 16 + 4 * q);
      for (int m = 0; m < MR && m < mr; ++m)
        f[m][q] = vfmaq_f32(f[m][q], vcvtq_f32_s32(q4_exact(e, g, m, q, d[m][q])), sg);
    }
  }
}

// The dot hook's output: E_g of rows < mr for all 16 columns of the panel.
template <int MR>
inline void q4_store_exact(const Q4Epilogue& e, int64_t g, int mr, const int32x4_t (&d)[MR][4], int32_t* out,
                           int64_t ldo) {
  for (int m = 0; m < MR && m < mr; ++m)
    for (int q = 0; q < 4; ++q) vst1q_s32(out + m * ldo + g * e.np + 4 * q, q4_exact(e, g, m, q, d[m][q]));
}

// Codes of 16 columns at k = j (lo) and k = 4 + j (hi) of one 8-k step, minus the zero points z16 (one per
// column), as fp32 quarters; then acc[q] += that * x[k] for both.
template <int J>
inline void q4_fma_k(float32x4_t (&acc)[4], uint8x16_t bj, int8x16_t z16, float32x4_t x_lo, float32x4_t x_hi) {
  const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bj, vdupq_n_u8(0x0F))), z16);
  const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bj, 4)), z16);
  const int16x8_t l0 = vmovl_s8(vget_low_s8(lo)), l1 = vmovl_high_s8(lo);
  const int16x8_t h0 = vmovl_s8(vget_low_s8(hi)), h1 = vmovl_high_s8(hi);
  acc[0] = vfmaq_laneq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(l0))), x_lo, J);
  acc[1] = vfmaq_laneq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(l0)), x_lo, J);
  acc[2] = vfmaq_laneq_f32(acc[2], vcvtq_f32_s32(vmovl_s16(vget_low_s16(l1))), x_lo, J);
  acc[3] = vfmaq_laneq_f32(acc[3], vcvtq_f32_s32(vmovl_high_s16(l1)), x_lo, J);
  acc[0] = vfmaq_laneq_f32(acc[0], vcvtq_f32_s32(vmovl_s16(vget_low_s16(h0))), x_hi, J);
  acc[1] = vfmaq_laneq_f32(acc[1], vcvtq_f32_s32(vmovl_high_s16(h0)), x_hi, J);
  acc[2] = vfmaq_laneq_f32(acc[2], vcvtq_f32_s32(vmovl_s16(vget_low_s16(h1))), x_hi, J);
  acc[3] = vfmaq_laneq_f32(acc[3], vcvtq_f32_s32(vmovl_high_s16(h1)), x_hi, J);
}

// The q4 dyn kernel over a dot routine: dot(k8_0, k8_1, d) sets d to the MR rows' raw u8 x u4 dot
// products over those 8-k steps.
template <int MR, typename Dot>
inline void q4_dyn(const Q4Epilogue& e, int mr, int64_t kp, Dot dot) {
  float32x4_t f[MR][4];
  zero_f<MR>(f);
  for_groups(e.n_groups, e.group_k8, kp / 8, [&](int64_t g, int64_t s0, int64_t s1) {
    int32x4_t d[MR][4];
    dot(s0, s1, d);
    q4_group<MR>(e, g, mr, d, f);
  });
  dyn_store<MR>(e, mr, f);
}

// The dot hook (Q4DotUkernel) over a dot routine for rows < mr: dot(a, k8_0, k8_1, d) as in q4_dyn, for the
// R rows from a (R = the routine's row count).
template <int R, typename Dot>
inline void q4_dot_hook(int mr, const uint8_t* a, int64_t lda, int64_t kp, const Q4Epilogue& e, int32_t* out,
                        int64_t ldo, Dot dot) {
  for (int m0 = 0; m0 < mr; m0 += R) {
    Q4Epilogue em = e;
    em.a_sum = e.a_sum + m0 * e.n_groups;
    const int rows = mr - m0 < R ? mr - m0 : R;
    for_groups(e.n_groups, e.group_k8, kp / 8, [&](int64_t g, int64_t s0, int64_t s1) {
      int32x4_t d[R][4];
      dot(a + m0 * lda, rows, s0, s1, d);
      q4_store_exact<R>(em, g, rows, d, out + m0 * ldo, ldo);
    });
  }
}

// The exported dot hook of a q4 aarch64 ISA file (at namespace slimnn scope), one row at a time over
// NS::dot_block<1> (see SLIMNN_ARM_DYN_ENTRY in kernels/qgemm/aarch64_common.h).
#define SLIMNN_ARM_Q4_DOT_ENTRY(name, NS)                                                                 \
  void name(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,              \
            const Q4Epilogue& e, int32_t* out, int64_t ldo) {                                             \
    (void)panels;                                                                                         \
    NS::q4_dot_hook<1>(mr, a, lda, kp, e, out, ldo,                                                       \
                       [&](const uint8_t* ar, int, int64_t s0, int64_t s1, int32x4_t(&d)[1][4]) {         \
                         NS::dot_block<1>(ar, lda, w, s0, s1, d);                                         \
                       });                                                                                \
  }
