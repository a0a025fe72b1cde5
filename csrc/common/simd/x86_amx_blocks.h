// The 2-2-4 tile block that the AMX-INT8 kernels share (qgemm/amx_q8.h, q4gemm/amx_q4.h): accumulators
// 0..3 = C[h][j] (row half h: rows 0-15 / 16-31 of up to 32; panel j of a pair of 16-column panels), A tiles
// 4..5 (the row halves), B tiles 6..7 (the pair): 4 loads per 4 tdpbusd, oneDNN brgemm's / ggml's pattern.
// kTwoHalves: more than 16 rows; kTwoPanels: both panels of the pair. Include inside the file's own
// namespace right after x86_amx.h (Tiles), real or emulated.
// (not a header guard: included once per translation unit, inside a namespace)

// C and A tiles for mr (1..32) rows, A rows of a_colsb bytes, B tiles of a_colsb / 4 rows x 64 bytes.
inline void amx_configure_2x2(Tiles& t, int mr, int a_colsb) {
  TileConfig c = tile_config();
  const int r0 = mr < 16 ? mr : 16, r1 = mr - r0;
  set_tile(c, 0, r0, 64);
  set_tile(c, 1, r0, 64);
  set_tile(c, 4, r0, a_colsb);
  if (r1 > 0) {
    set_tile(c, 2, r1, 64);
    set_tile(c, 3, r1, 64);
    set_tile(c, 5, r1, a_colsb);
  }
  set_tile(c, 6, a_colsb / 4, 64);
  set_tile(c, 7, a_colsb / 4, 64);
  t.configure(c);
}

template <bool kTwoHalves, bool kTwoPanels>
inline void amx_zero_2x2(Tiles& t) {
  t.zero<0>();
  if (kTwoPanels) t.zero<1>();
  if (kTwoHalves) {
    t.zero<2>();
    if (kTwoPanels) t.zero<3>();
  }
}

// C += A . B for one K piece: A rows from a (stride lda; rows 16.. at a + 16 * lda), B panels from b0 / b1
// (stride ldb).
template <bool kTwoHalves, bool kTwoPanels>
inline void amx_dpbusd_2x2(Tiles& t, const void* a, int64_t lda, const void* b0, const void* b1, int64_t ldb) {
  t.load<4>(a, lda);
  if (kTwoHalves) t.load<5>(static_cast<const uint8_t*>(a) + 16 * lda, lda);
  t.load<6>(b0, ldb);
  if (kTwoPanels) t.load<7>(b1, ldb);
  t.dpbusd<0, 4, 6>();
  if (kTwoPanels) t.dpbusd<1, 4, 7>();
  if (kTwoHalves) {
    t.dpbusd<2, 5, 6>();
    if (kTwoPanels) t.dpbusd<3, 5, 7>();
  }
}

// The accumulators into c[row][column of the pair] (32 int32 per row).
template <bool kTwoHalves, bool kTwoPanels>
inline void amx_store_2x2(const Tiles& t, int32_t (*c)[32]) {
  constexpr int64_t ld = sizeof(int32_t) * 32;
  t.store<0>(&c[0][0], ld);
  if (kTwoPanels) t.store<1>(&c[0][16], ld);
  if (kTwoHalves) {
    t.store<2>(&c[16][0], ld);
    if (kTwoPanels) t.store<3>(&c[16][16], ld);
  }
}

// The grouped dynamic epilogue of the AMX-INT8 kernels, the avx512vnni kernels' operations in their order
// (so the same bits): per group, facc = fma(float(E_g), scale_g, facc) over rows < mr, columns < cols
// (s: the group's scales of the pair's columns); at the end y = fma(fma(-zp, comp, facc), a_scale, bias)
// for the pair's columns from c0 (Ep: Q8Epilogue or Q4Epilogue, whose fields these share).
inline void amx_fold_group(float (*facc)[32], const int32_t (*c)[32], const float* s, int mr, int cols) {
  for (int m = 0; m < mr; ++m)
    for (int j = 0; j < cols; ++j) facc[m][j] = std::fma(float(c[m][j]), s[j], facc[m][j]);
}

template <typename Ep>
inline void amx_store_comp(const Ep& e, const float (*facc)[32], int mr, int64_t c0, int cols) {
  for (int m = 0; m < mr; ++m) {
    const float zp = float(e.a_zp[m]);
    float* y = e.y + m * e.ldy + c0;
    for (int j = 0; j < cols; ++j) {
      const float r = std::fma(-zp, e.comp[c0 + j], facc[m][j]);
      y[j] = std::fma(r, e.a_scale[m], e.bias ? e.bias[c0 + j] : 0.0f);
    }
  }
}

// The exported kernel pair of one compilation of an AMX dyn body (in namespace slimnn, after the file's own
// namespace is closed): name (the family's DynUkernel over weights Wt and epilogue Ep) forwarding to dyn, and
// name_dot (its DotUkernel, parameters dot_params) forwarding dot_args to dot.
#define SLIMNN_AMX_DYN_EXPORTS(name, dyn, Wt, Ep, dot, dot_params, dot_args)                               \
  void name(int mr, int panels, const uint8_t* a, int64_t lda, const Wt* w, int64_t kp, const Ep& e) {    \
    dyn(mr, panels, a, lda, w, kp, e);                                                                     \
  }                                                                                                        \
  void name##_dot dot_params { dot dot_args; }
