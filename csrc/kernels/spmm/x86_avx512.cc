// AVX-512 F/BW/VL/DQ spmm kernels.
//  - GEMV (M = 1): csr with scalar cursors and 2:4/4:8 with rank tables (x86_gemv.h, shared with AVX2);
//    bsr with one broadcast x per 16x1 block, four 4x1 blocks per vector (x values repeated by vpermps),
//    four 1x4 or two 1x8 blocks per vector (x loaded contiguously); other N:M with vexpandps placing the
//    stored values at their mask positions.
//  - batched (MT = 16 activation rows in one zmm): every stored value is broadcast and multiplied with the
//    64-byte row xt[col]. int8 values are first widened into a small fp32 buffer.
#include <immintrin.h>

#include <cstring>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace avx512 {
namespace {

#include "kernels/spmm/x86_gemv.h"

inline int64_t clampi(int64_t v, int64_t hi) { return v < hi ? v : hi; }
inline bool row_ok(int64_t row, int64_t n) { return static_cast<uint64_t>(row) < static_cast<uint64_t>(n); }

template <typename V>
inline __m512 load16(const V* p);
template <>
inline __m512 load16<float>(const float* p) {
  return _mm512_loadu_ps(p);
}
template <>
inline __m512 load16<int8_t>(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

template <typename V>
inline __m512 load16z(const V* p, __mmask16 m);
template <>
inline __m512 load16z<float>(const float* p, __mmask16 m) {
  return _mm512_maskz_loadu_ps(m, p);
}
template <>
inline __m512 load16z<int8_t>(const int8_t* p, __mmask16 m) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p)));
}

// Widens count int8 values to fp32 (reads exactly count bytes).
inline void widen(const int8_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) _mm512_storeu_ps(dst + i, load16<int8_t>(src + i));
  if (i < count) {
    const __mmask16 m = static_cast<__mmask16>((1u << (count - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, m, load16z<int8_t>(src + i, m));
  }
}

// Values as fp32: fp32 values are used in place; int8 values are widened chunk by chunk into `buf`.
constexpr int64_t kBuf = 2048;

template <typename V>
struct Values {
  const V* src;
  float* buf;
  // Returns fp32 values [i0, i0 + count) (count <= kBuf).
  const float* get(int64_t i0, int64_t count);
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

inline float row_scale(const SparseView& w, int64_t i) { return w.scales ? w.scales[i] : 1.0f; }

// ---------------------------------------------------------------- csr, batched (MT = 16)

template <int BITS, typename V>
void csr_m16(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  constexpr uint64_t M = (uint64_t{1} << BITS) - 1;
  constexpr int64_t kSlots = kBuf / kSellLanes;
  const uint64_t kmax = static_cast<uint64_t>(w.k - 1);
  alignas(64) float buf[kBuf];
  Values<V> vals{static_cast<const V*>(w.values), buf};
  for (int64_t g = u0; g < u1; ++g) {
    const int64_t j0 = w.ptr[g], j1 = w.ptr[g + 1];
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
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
#define SLIMNN_LANE(l, c, a)                                                \
  c += (d >> (l * BITS)) & M;                                               \
  c = c < kmax ? c : kmax;                                                  \
  a = _mm512_fmadd_ps(_mm512_set1_ps(vf[l]), _mm512_load_ps(xt + c * 16), a);
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
    const __m512 acc[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
    for (int l = 0; l < kSellLanes; ++l) {
      const int64_t li = g * kSellLanes + l, row = w.perm[li];
      if (!row_ok(row, w.n)) continue;
      _mm512_storeu_ps(yt + row * 16, _mm512_mul_ps(acc[l], _mm512_set1_ps(row_scale(w, li))));
    }
  }
}

// ---------------------------------------------------------------- bsr, GEMV

template <typename V>
void bsr16x1_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 4 <= e; i += 4)
      for (int u = 0; u < 4; ++u)
        a[u] = _mm512_fmadd_ps(load16<V>(vals + (i + u) * 16), _mm512_set1_ps(x[clampi(w.bcol[i + u], kbmax)]), a[u]);
    for (; i < e; ++i)
      a[0] = _mm512_fmadd_ps(load16<V>(vals + i * 16), _mm512_set1_ps(x[clampi(w.bcol[i], kbmax)]), a[0]);
    __m512 r = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
    if (w.scales) r = _mm512_mul_ps(r, _mm512_loadu_ps(w.scales + b * 16));
    const int64_t rows = w.n - b * 16;
    _mm512_mask_storeu_ps(y + b * 16, rows >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << rows) - 1), r);
  }
}

inline __m128 gather4(const float* x, int64_t c0, int64_t c1, int64_t c2, int64_t c3) {
  const __m128 p01 = _mm_insert_ps(_mm_load_ss(x + c0), _mm_load_ss(x + c1), 0x10);
  const __m128 p23 = _mm_insert_ps(_mm_load_ss(x + c2), _mm_load_ss(x + c3), 0x10);
  return _mm_movelh_ps(p01, p23);
}

template <typename V>
void bsr4x1_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  const __m512i rep = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  for (int64_t b = u0; b < u1; ++b) {
    __m512 acc = _mm512_setzero_ps(), acc1 = acc;
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 8 <= e; i += 8) {
      const __m128 x0 = gather4(x, clampi(w.bcol[i], kbmax), clampi(w.bcol[i + 1], kbmax),
                                clampi(w.bcol[i + 2], kbmax), clampi(w.bcol[i + 3], kbmax));
      const __m128 x1 = gather4(x, clampi(w.bcol[i + 4], kbmax), clampi(w.bcol[i + 5], kbmax),
                                clampi(w.bcol[i + 6], kbmax), clampi(w.bcol[i + 7], kbmax));
      acc = _mm512_fmadd_ps(load16<V>(vals + i * 4), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(x0)), acc);
      acc1 = _mm512_fmadd_ps(load16<V>(vals + i * 4 + 16), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(x1)),
                             acc1);
    }
    acc = _mm512_add_ps(acc, acc1);
    for (; i + 4 <= e; i += 4) {
      const __m128 xv = gather4(x, clampi(w.bcol[i], kbmax), clampi(w.bcol[i + 1], kbmax),
                                clampi(w.bcol[i + 2], kbmax), clampi(w.bcol[i + 3], kbmax));
      acc = _mm512_fmadd_ps(load16<V>(vals + i * 4), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(xv)), acc);
    }
    if (i < e) {  // 1..3 blocks: missing ones read block i's column, with zero weights
      const int64_t rem = e - i, c0 = clampi(w.bcol[i], kbmax);
      const int64_t c1 = rem > 1 ? clampi(w.bcol[i + 1], kbmax) : c0, c2 = rem > 2 ? clampi(w.bcol[i + 2], kbmax) : c0;
      const __m128 xv = gather4(x, c0, c1, c2, c0);
      const __mmask16 m = static_cast<__mmask16>((1u << (4 * rem)) - 1);
      acc = _mm512_fmadd_ps(load16z<V>(vals + i * 4, m), _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(xv)), acc);
    }
    __m128 r = _mm_add_ps(_mm_add_ps(_mm512_castps512_ps128(acc), _mm512_extractf32x4_ps(acc, 1)),
                          _mm_add_ps(_mm512_extractf32x4_ps(acc, 2), _mm512_extractf32x4_ps(acc, 3)));
    if (w.scales) r = _mm_mul_ps(r, _mm_loadu_ps(w.scales + b * 4));
    const int64_t rows = w.n - b * 4;
    _mm_mask_storeu_ps(y + b * 4, rows >= 4 ? __mmask8(0xF) : __mmask8((1u << rows) - 1), r);
  }
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

template <typename V>
inline __m256 load8(const V* p);
template <>
inline __m256 load8<float>(const float* p) {
  return _mm256_loadu_ps(p);
}
template <>
inline __m256 load8<int8_t>(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <typename V>
void bsr1x4_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m128 t = _mm_setzero_ps();
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 8 <= e; i += 8) {
      __m512 x0 = _mm512_castps128_ps512(_mm_loadu_ps(x + clampi(w.bcol[i], kbmax) * 4));
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + clampi(w.bcol[i + 1], kbmax) * 4), 1);
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + clampi(w.bcol[i + 2], kbmax) * 4), 2);
      x0 = _mm512_insertf32x4(x0, _mm_loadu_ps(x + clampi(w.bcol[i + 3], kbmax) * 4), 3);
      __m512 x1 = _mm512_castps128_ps512(_mm_loadu_ps(x + clampi(w.bcol[i + 4], kbmax) * 4));
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + clampi(w.bcol[i + 5], kbmax) * 4), 1);
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + clampi(w.bcol[i + 6], kbmax) * 4), 2);
      x1 = _mm512_insertf32x4(x1, _mm_loadu_ps(x + clampi(w.bcol[i + 7], kbmax) * 4), 3);
      a0 = _mm512_fmadd_ps(load16<V>(vals + i * 4), x0, a0);
      a1 = _mm512_fmadd_ps(load16<V>(vals + i * 4 + 16), x1, a1);
    }
    for (; i < e; ++i) t = _mm_fmadd_ps(load4<V>(vals + i * 4), _mm_loadu_ps(x + clampi(w.bcol[i], kbmax) * 4), t);
    const float r = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)) + _mm512_reduce_add_ps(_mm512_castps128_ps512(t)) ;
    if (b < w.n) y[b] = r * row_scale(w, b);
  }
}

template <typename V>
void bsr1x8_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    __m256 t = _mm256_setzero_ps();
    int64_t i = w.ptr[b];
    const int64_t e = w.ptr[b + 1];
    for (; i + 4 <= e; i += 4) {
      const __m512 x0 = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(x + clampi(w.bcol[i], kbmax) * 8)),
                                           _mm256_loadu_ps(x + clampi(w.bcol[i + 1], kbmax) * 8), 1);
      const __m512 x1 = _mm512_insertf32x8(
          _mm512_castps256_ps512(_mm256_loadu_ps(x + clampi(w.bcol[i + 2], kbmax) * 8)),
          _mm256_loadu_ps(x + clampi(w.bcol[i + 3], kbmax) * 8), 1);
      a0 = _mm512_fmadd_ps(load16<V>(vals + i * 8), x0, a0);
      a1 = _mm512_fmadd_ps(load16<V>(vals + i * 8 + 16), x1, a1);
    }
    for (; i < e; ++i)
      t = _mm256_fmadd_ps(load8<V>(vals + i * 8), _mm256_loadu_ps(x + clampi(w.bcol[i], kbmax) * 8), t);
    const float r = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_castps256_ps512(t)));
    if (b < w.n) y[b] = r * row_scale(w, b);
  }
}

template <typename V>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.br == 16) return bsr16x1_m1<V>(w, u0, u1, x, y);
  if (w.br == 4) return bsr4x1_m1<V>(w, u0, u1, x, y);
  if (w.bc == 4) return bsr1x4_m1<V>(w, u0, u1, x, y);
  return bsr1x8_m1<V>(w, u0, u1, x, y);
}

// ---------------------------------------------------------------- bsr, batched (MT = 16)

// R = 1 keeps one accumulator per block column (C independent chains); R > 1 one per row.
template <typename V, int R, int C>
void bsr_m16_rc(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  constexpr int NA = R == 1 ? C : R;
  constexpr int64_t kBlocks = kBuf / (R * C);
  const int64_t kbmax = w.kb - 1;
  alignas(64) float buf[kBuf];
  Values<V> vals{static_cast<const V*>(w.values), buf};
  for (int64_t b = u0; b < u1; ++b) {
    __m512 acc[NA];
    for (int a = 0; a < NA; ++a) acc[a] = _mm512_setzero_ps();
    const int64_t e = w.ptr[b + 1];
    for (int64_t ic = w.ptr[b]; ic < e; ic += kBlocks) {
      const int64_t ie = e - ic < kBlocks ? e : ic + kBlocks;
      const float* vf = vals.get(ic * R * C, (ie - ic) * R * C);
      for (int64_t i = ic; i < ie; ++i, vf += R * C) {
        const float* xb = xt + clampi(w.bcol[i], kbmax) * C * 16;
        for (int c = 0; c < C; ++c) {
          const __m512 xv = _mm512_load_ps(xb + c * 16);
          for (int a = 0; a < R; ++a) {
            const int ai = R == 1 ? c : a;
            acc[ai] = _mm512_fmadd_ps(_mm512_set1_ps(vf[a * C + c]), xv, acc[ai]);
          }
        }
      }
    }
    if (R == 1) {
      for (int a = 1; a < NA; ++a) acc[0] = _mm512_add_ps(acc[0], acc[a]);
      if (b < w.n) _mm512_storeu_ps(yt + b * 16, _mm512_mul_ps(acc[0], _mm512_set1_ps(row_scale(w, b))));
    } else {
      for (int a = 0; a < R; ++a) {
        const int64_t row = b * R + a;
        if (row >= w.n) break;
        _mm512_storeu_ps(yt + row * 16, _mm512_mul_ps(acc[a], _mm512_set1_ps(row_scale(w, row))));
      }
    }
  }
}

template <typename V>
void bsr_m16(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  if (w.br == 16) return bsr_m16_rc<V, 16, 1>(w, u0, u1, xt, yt);
  if (w.br == 4) return bsr_m16_rc<V, 4, 1>(w, u0, u1, xt, yt);
  if (w.bc == 4) return bsr_m16_rc<V, 1, 4>(w, u0, u1, xt, yt);
  return bsr_m16_rc<V, 1, 8>(w, u0, u1, xt, yt);
}

// ---------------------------------------------------------------- nm

template <typename V>
void nm_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.vpc == 8 && w.nm_m <= 8) return nm8_gemv<V>(w, u0, u1, x, y);
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kc = w.kc, vpc = w.vpc;
  const __mmask16 vm = static_cast<__mmask16>((1u << vpc) - 1);
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    const uint16_t* mp = w.masks + row * kc;
    const V* vp = vals + row * kc * vpc;
    __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    int64_t ch = 0;
    for (; ch + 4 <= kc; ch += 4)
      for (int u = 0; u < 4; ++u)
        a[u] = _mm512_fmadd_ps(_mm512_maskz_expand_ps(mp[ch + u], load16z<V>(vp + (ch + u) * vpc, vm)),
                               _mm512_loadu_ps(x + (ch + u) * kNmChunk), a[u]);
    for (; ch < kc; ++ch)
      a[0] = _mm512_fmadd_ps(_mm512_maskz_expand_ps(mp[ch], load16z<V>(vp + ch * vpc, vm)),
                             _mm512_loadu_ps(x + ch * kNmChunk), a[0]);
    const __m512 r = _mm512_add_ps(_mm512_add_ps(a[0], a[1]), _mm512_add_ps(a[2], a[3]));
    y[row] = _mm512_reduce_add_ps(r) * row_scale(w, row);
  }
}

// Four rows at a time: eight independent accumulator chains hide the FMA latency.
template <typename V, int RB>
void nm_m16_rows(const SparseView& w, int64_t row0, const float* xt, float* yt, float* buf) {
  const int64_t kc = w.kc, vpc = w.vpc;
  const int64_t kChunks = kBuf / (RB * vpc);
  Values<V> vals{static_cast<const V*>(w.values), nullptr};
  __m512 acc[RB][2];
  for (int r = 0; r < RB; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
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
      const float* xc = xt + ch * kNmChunk * 16;
      for (int i = 0; i < vpc; ++i) {
        for (int r = 0; r < RB; ++r) {
          const int e = __builtin_ctz(bits[r] | 0x10000u) & 15;
          bits[r] &= bits[r] - 1;
          acc[r][i & 1] = _mm512_fmadd_ps(_mm512_set1_ps(vf[r][i]), _mm512_load_ps(xc + e * 16), acc[r][i & 1]);
        }
      }
      for (int r = 0; r < RB; ++r) vf[r] += vpc;
    }
  }
  for (int r = 0; r < RB; ++r)
    _mm512_storeu_ps(yt + (row0 + r) * 16,
                     _mm512_mul_ps(_mm512_add_ps(acc[r][0], acc[r][1]), _mm512_set1_ps(row_scale(w, row0 + r))));
}

template <typename V>
void nm_m16(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  alignas(64) float buf[kBuf];
  if (u1 > w.n) u1 = w.n;
  int64_t row = u0;
  for (; row + 4 <= u1; row += 4) nm_m16_rows<V, 4>(w, row, xt, yt, buf);
  for (; row < u1; ++row) nm_m16_rows<V, 1>(w, row, xt, yt, buf);
}

template <typename V>
void csr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.index_bits == 4) return csr_gemv<4, V>(w, u0, u1, x, y);
  return csr_gemv<8, V>(w, u0, u1, x, y);
}

template <typename V>
void csr_batched(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  if (w.index_bits == 4) return csr_m16<4, V>(w, u0, u1, xt, yt);
  return csr_m16<8, V>(w, u0, u1, xt, yt);
}

}  // namespace
}  // namespace avx512

#define SLIMNN_AVX512(name, fn, V)                                                          \
  void name(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) { \
    avx512::fn<V>(w, u0, u1, xt, yt);                                                     \
  }
SLIMNN_AVX512(spmm_csr_f32_f32_m1__avx512, csr_m1, float)
SLIMNN_AVX512(spmm_csr_f32_f32_m16__avx512, csr_batched, float)
SLIMNN_AVX512(spmm_csr_i8_f32_m1__avx512, csr_m1, int8_t)
SLIMNN_AVX512(spmm_csr_i8_f32_m16__avx512, csr_batched, int8_t)
SLIMNN_AVX512(spmm_bsr_f32_f32_m1__avx512, bsr_m1, float)
SLIMNN_AVX512(spmm_bsr_f32_f32_m16__avx512, bsr_m16, float)
SLIMNN_AVX512(spmm_bsr_i8_f32_m1__avx512, bsr_m1, int8_t)
SLIMNN_AVX512(spmm_bsr_i8_f32_m16__avx512, bsr_m16, int8_t)
SLIMNN_AVX512(spmm_nm_f32_f32_m1__avx512, nm_m1, float)
SLIMNN_AVX512(spmm_nm_f32_f32_m16__avx512, nm_m16, float)
SLIMNN_AVX512(spmm_nm_i8_f32_m1__avx512, nm_m1, int8_t)
SLIMNN_AVX512(spmm_nm_i8_f32_m16__avx512, nm_m16, int8_t)
#undef SLIMNN_AVX512

}  // namespace slimnn
