// Portable reference kernels: plain C++, compiled without ISA flags. The fallback on every CPU and the model
// the ISA kernels are tested against. Each entry is read in storage order and accumulated in fp32 with a
// separate multiply and add; column indices are clamped at every entry.
#include <cstring>
#include <type_traits>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace portable {
namespace {

template <typename V>
inline float val(const void* p, int64_t i) {
  return static_cast<float>(static_cast<const V*>(p)[i]);
}

inline bool row_ok(int64_t row, int64_t n) { return static_cast<uint64_t>(row) < static_cast<uint64_t>(n); }

template <typename V, int MT>
void csr(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  const int64_t kmax = w.k - 1;
  for (int64_t g = u0; g < u1; ++g) {
    for (int lane = 0; lane < kSellLanes; ++lane) {
      const int64_t li = g * kSellLanes + lane;
      const int64_t row = w.perm[li];
      if (!row_ok(row, w.n)) continue;
      float acc[MT];
      for (int t = 0; t < MT; ++t) acc[t] = 0.0f;
      int64_t col = 0;
      for (int64_t j = w.ptr[g]; j < w.ptr[g + 1]; ++j) {
        const int d = w.index_bits == 8 ? w.deltas[j * 8 + lane] : (w.deltas[j * 4 + lane / 2] >> (4 * (lane % 2))) & 15;
        col += d;
        if (col > kmax) col = kmax;
        const float v = val<V>(w.values, j * kSellLanes + lane);
        const float* xr = xt + col * MT;
        for (int t = 0; t < MT; ++t) acc[t] += v * xr[t];
      }
      const float s = w.scales ? w.scales[li] : 1.0f;
      for (int t = 0; t < MT; ++t) yt[row * MT + t] = acc[t] * s;
    }
  }
}

template <typename V, int MT>
void bsr(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  const int R = w.br, C = w.bc;
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    float acc[16][MT];
    for (int a = 0; a < R; ++a)
      for (int t = 0; t < MT; ++t) acc[a][t] = 0.0f;
    for (int64_t i = w.ptr[b]; i < w.ptr[b + 1]; ++i) {
      const int64_t col = w.bcol[i] < kbmax ? w.bcol[i] : kbmax;
      for (int a = 0; a < R; ++a)
        for (int e = 0; e < C; ++e) {
          const float v = val<V>(w.values, (i * R + a) * C + e);
          const float* xr = xt + (col * C + e) * MT;
          for (int t = 0; t < MT; ++t) acc[a][t] += v * xr[t];
        }
    }
    for (int a = 0; a < R; ++a) {
      const int64_t row = b * R + a;
      if (!row_ok(row, w.n)) break;
      const float s = w.scales ? w.scales[row] : 1.0f;
      for (int t = 0; t < MT; ++t) yt[row * MT + t] = acc[a][t] * s;
    }
  }
}

template <typename V, int MT>
void nm(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  for (int64_t row = u0; row < u1; ++row) {
    if (!row_ok(row, w.n)) break;
    float acc[MT];
    for (int t = 0; t < MT; ++t) acc[t] = 0.0f;
    for (int64_t ch = 0; ch < w.kc; ++ch) {
      uint32_t bits = w.masks[row * w.kc + ch];
      const int64_t base = (row * w.kc + ch) * w.vpc;
      for (int i = 0; i < w.vpc; ++i) {
        const int e = __builtin_ctz(bits | 0x10000u) & 15;  // a mask short of bits reads column 0, in range
        bits &= bits - 1;
        const float v = val<V>(w.values, base + i);
        const float* xr = xt + (ch * kNmChunk + e) * MT;
        for (int t = 0; t < MT; ++t) acc[t] += v * xr[t];
      }
    }
    const float s = w.scales ? w.scales[row] : 1.0f;
    for (int t = 0; t < MT; ++t) yt[row * MT + t] = acc[t] * s;
  }
}

template <SpmmKind K, int MT>
void entry(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  using T = typename std::conditional<spmm_kind_i8(K), int8_t, float>::type;
  if (spmm_kind_csr(K)) return csr<T, MT>(w, u0, u1, xt, yt);
  if (spmm_kind_bsr(K)) return bsr<T, MT>(w, u0, u1, xt, yt);
  return nm<T, MT>(w, u0, u1, xt, yt);
}

}  // namespace
}  // namespace portable

// The exported portable kernels, expanded from kernels.inc (lines of the other ISAs expand to nothing).
#define SLIMNN_SPMM_PORTABLE_portable(kind, name, mt)                                     \
  void name(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) { \
    portable::entry<SpmmKind::kind, mt>(w, u0, u1, xt, yt);                             \
  }
#define SLIMNN_SPMM_PORTABLE_avx2(kind, name, mt)
#define SLIMNN_SPMM_PORTABLE_avx512(kind, name, mt)
#define SLIMNN_SPMM_PORTABLE_neon(kind, name, mt)
#define SLIMNN_SPMM_KERNEL(kind, isa_bit, isa_word, name, mt, gemv, xpad) SLIMNN_SPMM_PORTABLE_##isa_word(kind, name, mt)
#include "kernels/spmm/kernels.inc"
#undef SLIMNN_SPMM_KERNEL
#undef SLIMNN_SPMM_PORTABLE_neon
#undef SLIMNN_SPMM_PORTABLE_avx512
#undef SLIMNN_SPMM_PORTABLE_avx2
#undef SLIMNN_SPMM_PORTABLE_portable

}  // namespace slimnn
