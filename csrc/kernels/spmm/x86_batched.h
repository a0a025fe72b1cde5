// The batched spmm kernels (MT = W activation rows in one vector) and their helpers, written once over common/simd/x86_<isa>.h (V, W, vfma, vloada, vload_i8) and included by each ISA
// file inside its own namespace. Every stored value is broadcast and multiplied with the W-float row
// xt[col] (the driver's transposed, zero-padded activations); int8 values are first widened into a small
// fp32 buffer. Per ISA, before including: kBsrRowsPerPass (rows of an R x C block accumulated in one pass;
// R > kBsrRowsPerPass takes several passes) and kNmRowBlock (rows of an N:M weight run together).
// (not a header guard: included once per ISA translation unit, inside a namespace)

// Widens count int8 values to fp32 (reads exactly count bytes).
inline void widen(const int8_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + W <= count; i += W) vstore(dst + i, vload_i8(src + i));
  for (; i < count; ++i) dst[i] = static_cast<float>(src[i]);
}

// Values as fp32: fp32 values are used in place; int8 values are widened chunk by chunk into `buf`.
constexpr int64_t kBuf = 2048;

template <typename T>
struct Values {
  const T* src;
  float* buf;
  const float* get(int64_t i0, int64_t count);  // fp32 values [i0, i0 + count), count <= kBuf
};
template <>
inline const float* Values<float>::get(int64_t i0, int64_t) {
  return src + i0;
}
template <>
inline const float* Values<int8_t>::get(int64_t i0, int64_t count) {
  widen(src + i0, count, buf);
  return buf;
}

// ---------------------------------------------------------------- csr, batched

template <int BITS, typename T>
void csr_mt(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  constexpr uint64_t kDelta = (uint64_t{1} << BITS) - 1;
  constexpr int64_t kSlots = kBuf / kSellLanes;
  const uint64_t kmax = static_cast<uint64_t>(w.k - 1);
  alignas(64) float buf[kBuf];
  Values<T> vals{static_cast<const T*>(w.values), buf};
  for (int64_t g = u0; g < u1; ++g) {
    const int64_t j0 = w.ptr[g], j1 = w.ptr[g + 1];
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
    V a0 = vzero(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    for (int64_t jc = j0; jc < j1; jc += kSlots) {
      const int64_t je = j1 - jc < kSlots ? j1 : jc + kSlots;
      const float* vf = vals.get(jc * kSellLanes, (je - jc) * kSellLanes);
      const uint8_t* dp = w.deltas + jc * BITS;
      for (int64_t j = jc; j < je; ++j, dp += BITS, vf += kSellLanes) {
        uint64_t d;
        if (BITS == 8) {
          std::memcpy(&d, dp, 8);
        } else {
          uint32_t d32;
          std::memcpy(&d32, dp, 4);
          d = d32;
        }
#define SLIMNN_LANE(l, c, a)        \
  c += (d >> (l * BITS)) & kDelta;  \
  c = c < kmax ? c : kmax;          \
  a = vfma(vset1(vf[l]), vloada(xt + c * W), a);
        SLIMNN_LANE(0, c0, a0)
        SLIMNN_LANE(1, c1, a1)
        SLIMNN_LANE(2, c2, a2)
        SLIMNN_LANE(3, c3, a3)
        SLIMNN_LANE(4, c4, a4)
        SLIMNN_LANE(5, c5, a5)
        SLIMNN_LANE(6, c6, a6)
        SLIMNN_LANE(7, c7, a7)
#undef SLIMNN_LANE
      }
    }
    const V acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int l = 0; l < kSellLanes; ++l) {
      const int64_t li = g * kSellLanes + l, row = w.perm[li];
      if (!row_ok(row, w.n)) continue;
      vstore(yt + row * W, vmul(acc[l], vset1(row_scale(w, li))));
    }
  }
}

template <typename T>
void csr_batched(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  if (w.index_bits == 4) return csr_mt<4, T>(w, u0, u1, xt, yt);
  return csr_mt<8, T>(w, u0, u1, xt, yt);
}

// ---------------------------------------------------------------- bsr, batched

// Rows [p0, p0 + RP) of each R x C block in one pass. R = 1 keeps one accumulator per block column (C
// independent chains); R > 1 one per row.
template <typename T, int R, int C, int RP>
void bsr_mt_pass(const SparseView& w, int64_t b, int p0, const float* xt, float* yt, Values<T>& vals) {
  constexpr int NA = R == 1 ? C : RP;
  constexpr int64_t kBlocks = kBuf / (R * C);
  const int64_t kbmax = w.kb - 1;
  V acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = vzero();
  const int64_t e = w.ptr[b + 1];
  for (int64_t ic = w.ptr[b]; ic < e; ic += kBlocks) {
    const int64_t ie = e - ic < kBlocks ? e : ic + kBlocks;
    const float* vf = vals.get(ic * R * C, (ie - ic) * R * C);
    for (int64_t i = ic; i < ie; ++i, vf += R * C) {
      const float* xb = xt + clampi(w.bcol[i], kbmax) * C * W;
      for (int c = 0; c < C; ++c) {
        const V xv = vloada(xb + c * W);
        for (int a = 0; a < (R == 1 ? 1 : RP); ++a) {
          const int ai = R == 1 ? c : a;
          acc[ai] = vfma(vset1(vf[(p0 + a) * C + c]), xv, acc[ai]);
        }
      }
    }
  }
  if (R == 1) {
    for (int a = 1; a < NA; ++a) acc[0] = vadd(acc[0], acc[a]);
    if (b < w.n) vstore(yt + b * W, vmul(acc[0], vset1(row_scale(w, b))));
    return;
  }
  for (int a = 0; a < RP; ++a) {
    const int64_t row = b * R + p0 + a;
    if (row >= w.n) break;
    vstore(yt + row * W, vmul(acc[a], vset1(row_scale(w, row))));
  }
}

template <typename T, int R, int C>
void bsr_batched(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt, BsrShape<R, C>) {
  constexpr int RP = R > kBsrRowsPerPass ? kBsrRowsPerPass : R;
  alignas(64) float buf[kBuf];
  Values<T> vals{static_cast<const T*>(w.values), buf};
  for (int64_t b = u0; b < u1; ++b)
    for (int p0 = 0; p0 < R; p0 += RP) bsr_mt_pass<T, R, C, RP>(w, b, p0, xt, yt, vals);
}

// ---------------------------------------------------------------- nm, batched

// RB rows at a time: 2 * RB independent accumulator chains hide the FMA latency.
template <typename T, int RB>
void nm_mt_rows(const SparseView& w, int64_t row0, const float* xt, float* yt, float* buf) {
  const int64_t kc = w.kc, vpc = w.vpc;
  const int64_t kChunks = kBuf / (RB * vpc);
  Values<T> vals{static_cast<const T*>(w.values), nullptr};
  V acc[RB][2];
  for (int r = 0; r < RB; ++r) acc[r][0] = acc[r][1] = vzero();
  for (int64_t cc = 0; cc < kc; cc += kChunks) {
    const int64_t ce = kc - cc < kChunks ? kc : cc + kChunks;
    const float* vf[RB];
    for (int r = 0; r < RB; ++r) {
      vals.buf = buf + r * kChunks * vpc;
      vf[r] = vals.get(((row0 + r) * kc + cc) * vpc, (ce - cc) * vpc);
    }
    for (int64_t ch = cc; ch < ce; ++ch) {
      uint32_t bits[RB];
      for (int r = 0; r < RB; ++r) bits[r] = w.masks[(row0 + r) * kc + ch];
      const float* xc = xt + ch * kNmChunk * W;
      for (int i = 0; i < vpc; ++i) {
        for (int r = 0; r < RB; ++r) {
          const int e = __builtin_ctz(bits[r] | 0x10000u) & 15;
          bits[r] &= bits[r] - 1;
          acc[r][i & 1] = vfma(vset1(vf[r][i]), vloada(xc + e * W), acc[r][i & 1]);
        }
      }
      for (int r = 0; r < RB; ++r) vf[r] += vpc;
    }
  }
  for (int r = 0; r < RB; ++r)
    vstore(yt + (row0 + r) * W, vmul(vadd(acc[r][0], acc[r][1]), vset1(row_scale(w, row0 + r))));
}

template <typename T>
void nm_batched(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  alignas(64) float buf[kBuf];
  if (u1 > w.n) u1 = w.n;
  int64_t row = u0;
  for (; row + kNmRowBlock <= u1; row += kNmRowBlock) nm_mt_rows<T, kNmRowBlock>(w, row, xt, yt, buf);
  for (; row < u1; ++row) nm_mt_rows<T, 1>(w, row, xt, yt, buf);
}
