// AVX2 + FMA spmm kernels (8-wide).
//  - GEMV (M = 1): csr with scalar cursors and 2:4/4:8 with rank tables (x86_gemv.h); bsr with broadcast x
//    for 16x1 and 4x1 blocks and contiguous x for 1x4 and 1x8 blocks; other N:M by compressing x to the
//    mask's positions (vpermps with the rank table per 8 columns) and multiplying with the stored values.
//  - batched (MT = 8 activation rows in one ymm): every stored value is broadcast and multiplied with the
//    32-byte row xt[col]. int8 values are first widened into a small fp32 buffer.
#include <immintrin.h>

#include <cstring>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace avx2 {
namespace {

#include "kernels/spmm/x86_gemv.h"

inline int64_t clampi(int64_t v, int64_t hi) { return v < hi ? v : hi; }
inline bool row_ok(int64_t row, int64_t n) { return static_cast<uint64_t>(row) < static_cast<uint64_t>(n); }
inline float row_scale(const SparseView& w, int64_t i) { return w.scales ? w.scales[i] : 1.0f; }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <typename V>
inline __m128 load4(const V* p);
template <>
inline __m128 load4<float>(const float* p) {
  return _mm_loadu_ps(p);
}
template <>
inline __m128 load4<int8_t>(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(v)));
}

// Widens count int8 values to fp32 (reads exactly count bytes).
inline void widen(const int8_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(dst + i, csr_load8<int8_t>(src + i));
  for (; i < count; ++i) dst[i] = static_cast<float>(src[i]);
}

constexpr int64_t kBuf = 2048;

template <typename V>
struct Values {
  const V* src;
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

// Stores the first `count` (1..8) lanes.
inline void store_first(float* y, __m256 v, int64_t count) {
  if (count >= 8) {
    _mm256_storeu_ps(y, v);
    return;
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int64_t i = 0; i < count; ++i) y[i] = t[i];
}

// ---------------------------------------------------------------- csr, batched (MT = 8)

template <int BITS, typename V>
void csr_m8(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  constexpr uint64_t M = (uint64_t{1} << BITS) - 1;
  constexpr int64_t kSlots = kBuf / kSellLanes;
  const uint64_t kmax = static_cast<uint64_t>(w.k - 1);
  alignas(32) float buf[kBuf];
  Values<V> vals{static_cast<const V*>(w.values), buf};
  for (int64_t g = u0; g < u1; ++g) {
    const int64_t j0 = w.ptr[g], j1 = w.ptr[g + 1];
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
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
#define SLIMNN_LANE(l, c, a)                   \
  c += (d >> (l * BITS)) & M;                  \
  c = c < kmax ? c : kmax;                     \
  a = _mm256_fmadd_ps(_mm256_set1_ps(vf[l]), _mm256_load_ps(xt + c * 8), a);
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
    const __m256 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int l = 0; l < kSellLanes; ++l) {
      const int64_t li = g * kSellLanes + l, row = w.perm[li];
      if (!row_ok(row, w.n)) continue;
      _mm256_storeu_ps(yt + row * 8, _mm256_mul_ps(acc[l], _mm256_set1_ps(row_scale(w, li))));
    }
  }
}

// ---------------------------------------------------------------- bsr, GEMV

template <typename V>
inline void load16_halves(const V* p, __m256* lo, __m256* hi);
template <>
inline void load16_halves<float>(const float* p, __m256* lo, __m256* hi) {
  *lo = _mm256_loadu_ps(p);
  *hi = _mm256_loadu_ps(p + 8);
}
template <>
inline void load16_halves<int8_t>(const int8_t* p, __m256* lo, __m256* hi) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  *lo = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  *hi = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_unpackhi_epi64(b, b)));
}

template <typename V>
void bsr16x1_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    __m256 lo, hi;
    for (; i + 2 <= e; i += 2) {
      const __m256 x0 = _mm256_set1_ps(x[clampi(w.bcol[i], kbmax)]);
      const __m256 x1 = _mm256_set1_ps(x[clampi(w.bcol[i + 1], kbmax)]);
      load16_halves<V>(vals + i * 16, &lo, &hi);
      a0 = _mm256_fmadd_ps(lo, x0, a0);
      a1 = _mm256_fmadd_ps(hi, x0, a1);
      load16_halves<V>(vals + (i + 1) * 16, &lo, &hi);
      a2 = _mm256_fmadd_ps(lo, x1, a2);
      a3 = _mm256_fmadd_ps(hi, x1, a3);
    }
    if (i < e) {
      const __m256 x0 = _mm256_set1_ps(x[clampi(w.bcol[i], kbmax)]);
      load16_halves<V>(vals + i * 16, &lo, &hi);
      a0 = _mm256_fmadd_ps(lo, x0, a0);
      a1 = _mm256_fmadd_ps(hi, x0, a1);
    }
    a0 = _mm256_add_ps(a0, a2);
    a1 = _mm256_add_ps(a1, a3);
    if (w.scales) {
      a0 = _mm256_mul_ps(a0, _mm256_loadu_ps(w.scales + b * 16));
      a1 = _mm256_mul_ps(a1, _mm256_loadu_ps(w.scales + b * 16 + 8));
    }
    const int64_t rows = w.n - b * 16;
    store_first(y + b * 16, a0, rows);
    if (rows > 8) store_first(y + b * 16 + 8, a1, rows - 8);
  }
}

template <typename V>
void bsr4x1_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    __m128 t = _mm_setzero_ps();
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 4 <= e; i += 4) {
      const __m256 x0 = _mm256_set_m128(_mm_set1_ps(x[clampi(w.bcol[i + 1], kbmax)]),
                                        _mm_set1_ps(x[clampi(w.bcol[i], kbmax)]));
      const __m256 x1 = _mm256_set_m128(_mm_set1_ps(x[clampi(w.bcol[i + 3], kbmax)]),
                                        _mm_set1_ps(x[clampi(w.bcol[i + 2], kbmax)]));
      a0 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 4), x0, a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 4 + 8), x1, a1);
    }
    for (; i < e; ++i) t = _mm_fmadd_ps(load4<V>(vals + i * 4), _mm_set1_ps(x[clampi(w.bcol[i], kbmax)]), t);
    const __m256 a = _mm256_add_ps(a0, a1);
    __m128 r = _mm_add_ps(_mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1)), t);
    if (w.scales) r = _mm_mul_ps(r, _mm_loadu_ps(w.scales + b * 4));
    alignas(16) float o[4];
    _mm_store_ps(o, r);
    for (int a2 = 0; a2 < 4; ++a2)
      if (b * 4 + a2 < w.n) y[b * 4 + a2] = o[a2];
  }
}

template <typename V>
void bsr1x4_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    __m128 t = _mm_setzero_ps();
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 4 <= e; i += 4) {
      const __m256 x0 = _mm256_loadu2_m128(x + clampi(w.bcol[i + 1], kbmax) * 4, x + clampi(w.bcol[i], kbmax) * 4);
      const __m256 x1 = _mm256_loadu2_m128(x + clampi(w.bcol[i + 3], kbmax) * 4, x + clampi(w.bcol[i + 2], kbmax) * 4);
      a0 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 4), x0, a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 4 + 8), x1, a1);
    }
    for (; i < e; ++i) t = _mm_fmadd_ps(load4<V>(vals + i * 4), _mm_loadu_ps(x + clampi(w.bcol[i], kbmax) * 4), t);
    const float r = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_castps128_ps256(t)));
    if (b < w.n) y[b] = r * row_scale(w, b);
  }
}

template <typename V>
void bsr1x8_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 2 <= e; i += 2) {
      a0 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 8), _mm256_loadu_ps(x + clampi(w.bcol[i], kbmax) * 8), a0);
      a1 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 8 + 8), _mm256_loadu_ps(x + clampi(w.bcol[i + 1], kbmax) * 8), a1);
    }
    if (i < e) a0 = _mm256_fmadd_ps(csr_load8<V>(vals + i * 8), _mm256_loadu_ps(x + clampi(w.bcol[i], kbmax) * 8), a0);
    if (b < w.n) y[b] = hsum(_mm256_add_ps(a0, a1)) * row_scale(w, b);
  }
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.br == 16) return bsr16x1_m1<V>(w, u0, u1, x, y);
  if (w.br == 4) return bsr4x1_m1<V>(w, u0, u1, x, y);
  if (w.bc == 4) return bsr1x4_m1<V>(w, u0, u1, x, y);
  return bsr1x8_m1<V>(w, u0, u1, x, y);
}

// ---------------------------------------------------------------- bsr, batched (MT = 8)

// Rows [P, P + RP) of each R x C block in one pass (R = 16 takes two passes of 8: 16 accumulators would not
// leave registers for the operands). R = 1 keeps one accumulator per block column.
template <typename V, int R, int C, int RP>
void bsr_m8_pass(const SparseView& w, int64_t b, int p0, const float* xt, float* yt, Values<V>& vals) {
  constexpr int NA = R == 1 ? C : RP;
  constexpr int64_t kBlocks = kBuf / (R * C);
  const int64_t kbmax = w.kb - 1;
  __m256 acc[NA];
  for (int a = 0; a < NA; ++a) acc[a] = _mm256_setzero_ps();
  const int64_t e = w.ptr[b + 1];
  for (int64_t ic = w.ptr[b]; ic < e; ic += kBlocks) {
    const int64_t ie = e - ic < kBlocks ? e : ic + kBlocks;
    const float* vf = vals.get(ic * R * C, (ie - ic) * R * C);
    for (int64_t i = ic; i < ie; ++i, vf += R * C) {
      const float* xb = xt + clampi(w.bcol[i], kbmax) * C * 8;
      for (int c = 0; c < C; ++c) {
        const __m256 xv = _mm256_load_ps(xb + c * 8);
        for (int a = 0; a < (R == 1 ? 1 : RP); ++a) {
          const int ai = R == 1 ? c : a;
          acc[ai] = _mm256_fmadd_ps(_mm256_set1_ps(vf[(p0 + a) * C + c]), xv, acc[ai]);
        }
      }
    }
  }
  if (R == 1) {
    for (int a = 1; a < NA; ++a) acc[0] = _mm256_add_ps(acc[0], acc[a]);
    if (b < w.n) _mm256_storeu_ps(yt + b * 8, _mm256_mul_ps(acc[0], _mm256_set1_ps(row_scale(w, b))));
    return;
  }
  for (int a = 0; a < RP; ++a) {
    const int64_t row = b * R + p0 + a;
    if (row >= w.n) break;
    _mm256_storeu_ps(yt + row * 8, _mm256_mul_ps(acc[a], _mm256_set1_ps(row_scale(w, row))));
  }
}

template <typename V, int R, int C>
void bsr_m8_rc(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  constexpr int RP = R > 8 ? 8 : R;
  alignas(32) float buf[kBuf];
  Values<V> vals{static_cast<const V*>(w.values), buf};
  for (int64_t b = u0; b < u1; ++b)
    for (int p0 = 0; p0 < R; p0 += RP) bsr_m8_pass<V, R, C, RP>(w, b, p0, xt, yt, vals);
}

template <typename V>
void bsr_m8(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  if (w.br == 16) return bsr_m8_rc<V, 16, 1>(w, u0, u1, xt, yt);
  if (w.br == 4) return bsr_m8_rc<V, 4, 1>(w, u0, u1, xt, yt);
  if (w.bc == 4) return bsr_m8_rc<V, 1, 4>(w, u0, u1, xt, yt);
  return bsr_m8_rc<V, 1, 8>(w, u0, u1, xt, yt);
}

// ---------------------------------------------------------------- nm

inline __m256 first_lanes(int count) {  // all-ones in lanes [0, count)
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

// Other N:M: the row's values are copied (or widened) into a buffer with slack, so full 8-lane loads stay
// in bounds; lanes past each half's count are zeroed with a lane mask.
template <typename V>
void nm_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.vpc == 8 && w.nm_m <= 8) return nm8_gemv<V>(w, u0, u1, x, y);
  const int64_t kc = w.kc, vpc = w.vpc;
  const int64_t kChunks = (kBuf - 16) / vpc;
  alignas(32) float buf[kBuf];
  const V* src = static_cast<const V*>(w.values);
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t cc = 0; cc < kc; cc += kChunks) {
      const int64_t ce = kc - cc < kChunks ? kc : cc + kChunks;
      const V* s0 = src + (row * kc + cc) * vpc;
      const int64_t count = (ce - cc) * vpc;
      for (int64_t i = 0; i < count; ++i) buf[i] = static_cast<float>(s0[i]);
      const float* vf = buf;
      for (int64_t ch = cc; ch < ce; ++ch, vf += vpc) {
        const uint32_t m = w.masks[row * kc + ch];
        const int lo = __builtin_popcount(m & 0xFF) < vpc ? __builtin_popcount(m & 0xFF) : static_cast<int>(vpc);
        const __m256i r0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kRank.v[m & 0xFF])));
        const __m256i r1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(kRank.v[m >> 8])));
        const __m256 x0 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + ch * kNmChunk), r0);
        const __m256 x1 = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + ch * kNmChunk + 8), r1);
        a0 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(vf), first_lanes(lo)), x0, a0);
        a1 = _mm256_fmadd_ps(_mm256_and_ps(_mm256_loadu_ps(vf + lo), first_lanes(static_cast<int>(vpc) - lo)), x1, a1);
      }
    }
    y[row] = hsum(_mm256_add_ps(a0, a1)) * row_scale(w, row);
  }
}

// Two rows at a time: four independent accumulator chains hide the FMA latency (four rows run out of
// general registers for the masks and value pointers).
template <typename V, int RB>
void nm_m8_rows(const SparseView& w, int64_t row0, const float* xt, float* yt, float* buf) {
  const int64_t kc = w.kc, vpc = w.vpc;
  const int64_t kChunks = kBuf / (RB * vpc);
  Values<V> vals{static_cast<const V*>(w.values), nullptr};
  __m256 acc[RB][2];
  for (int r = 0; r < RB; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
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
      const float* xc = xt + ch * kNmChunk * 8;
      for (int i = 0; i < vpc; ++i) {
        for (int r = 0; r < RB; ++r) {
          const int e = __builtin_ctz(bits[r] | 0x10000u) & 15;
          bits[r] &= bits[r] - 1;
          acc[r][i & 1] = _mm256_fmadd_ps(_mm256_set1_ps(vf[r][i]), _mm256_load_ps(xc + e * 8), acc[r][i & 1]);
        }
      }
      for (int r = 0; r < RB; ++r) vf[r] += vpc;
    }
  }
  for (int r = 0; r < RB; ++r)
    _mm256_storeu_ps(yt + (row0 + r) * 8,
                     _mm256_mul_ps(_mm256_add_ps(acc[r][0], acc[r][1]), _mm256_set1_ps(row_scale(w, row0 + r))));
}

template <typename V>
void nm_m8(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  alignas(32) float buf[kBuf];
  if (u1 > w.n) u1 = w.n;
  int64_t row = u0;
  for (; row + 2 <= u1; row += 2) nm_m8_rows<V, 2>(w, row, xt, yt, buf);
  for (; row < u1; ++row) nm_m8_rows<V, 1>(w, row, xt, yt, buf);
}

template <typename V>
void csr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.index_bits == 4) return csr_gemv<4, V>(w, u0, u1, x, y);
  return csr_gemv<8, V>(w, u0, u1, x, y);
}

template <typename V>
void csr_batched(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  if (w.index_bits == 4) return csr_m8<4, V>(w, u0, u1, xt, yt);
  return csr_m8<8, V>(w, u0, u1, xt, yt);
}

}  // namespace
}  // namespace avx2

#define SLIMNN_AVX2(name, fn, V)                                                            \
  void name(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) { \
    avx2::fn<V>(w, u0, u1, xt, yt);                                                       \
  }
SLIMNN_AVX2(spmm_csr_f32_f32_m1__avx2, csr_m1, float)
SLIMNN_AVX2(spmm_csr_f32_f32_m8__avx2, csr_batched, float)
SLIMNN_AVX2(spmm_csr_i8_f32_m1__avx2, csr_m1, int8_t)
SLIMNN_AVX2(spmm_csr_i8_f32_m8__avx2, csr_batched, int8_t)
SLIMNN_AVX2(spmm_bsr_f32_f32_m1__avx2, bsr_m1, float)
SLIMNN_AVX2(spmm_bsr_f32_f32_m8__avx2, bsr_m8, float)
SLIMNN_AVX2(spmm_bsr_i8_f32_m1__avx2, bsr_m1, int8_t)
SLIMNN_AVX2(spmm_bsr_i8_f32_m8__avx2, bsr_m8, int8_t)
SLIMNN_AVX2(spmm_nm_f32_f32_m1__avx2, nm_m1, float)
SLIMNN_AVX2(spmm_nm_f32_f32_m8__avx2, nm_m8, float)
SLIMNN_AVX2(spmm_nm_i8_f32_m1__avx2, nm_m1, int8_t)
SLIMNN_AVX2(spmm_nm_i8_f32_m8__avx2, nm_m8, int8_t)
#undef SLIMNN_AVX2

}  // namespace slimnn
