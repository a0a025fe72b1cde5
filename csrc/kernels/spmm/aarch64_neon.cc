// NEON spmm kernels (4 fp32 lanes, common/simd/arm_neon.h).
//  - batched (MT = 4 activation rows in one vector): x86_batched.h, the vector body the x86 files share.
//  - GEMV (M = 1): csr walks the 8 lanes of a SELL slice as two vectors (XNNPACK's NEON SpMM also keeps a
//    vector of output rows and broadcasts nothing: here each lane gathers its own x[col] with a lane load),
//    clamping every column like the portable kernel; bsr vectorizes a block's rows (16x1, 4x1: x broadcast)
//    or its columns (1x4, 1x8: x contiguous, one horizontal sum per block row); N:M gathers the x of four
//    stored values at a time from the mask bits (the portable kernel's ctz walk) and multiplies them with
//    four stored values.
#include <arm_neon.h>

#include <cstring>
#include <type_traits>

#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace spmm_neon {
namespace {

#include "common/simd/arm_neon.h"

constexpr int kBsrRowsPerPass = 16;  // 32 registers: a 16-row block runs in one pass (4 x 4 accumulators)
constexpr int kNmRowBlock = 4;
#include "kernels/spmm/kernel_common.h"
#include "kernels/spmm/x86_batched.h"

// Four stored values as fp32 (int8 widened exactly).
inline V load4(const float* p) { return vld1q_f32(p); }
inline V load4(const int8_t* p) { return vload_i8(p); }

// ---------------------------------------------------------------- csr, GEMV

inline V gather4(const float* x, const int64_t* col) {
  V v = vdupq_n_f32(0.0f);
  v = vld1q_lane_f32(x + col[0], v, 0);
  v = vld1q_lane_f32(x + col[1], v, 1);
  v = vld1q_lane_f32(x + col[2], v, 2);
  v = vld1q_lane_f32(x + col[3], v, 3);
  return v;
}

template <typename T>
void csr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  static_assert(kSellLanes == 8, "two vectors per slice");
  const T* vals = static_cast<const T*>(w.values);
  const int64_t kmax = w.k - 1;
  for (int64_t g = u0; g < u1; ++g) {
    int64_t col[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    V a0 = vzero(), a1 = a0;
    for (int64_t j = w.ptr[g]; j < w.ptr[g + 1]; ++j) {
      for (int l = 0; l < 8; ++l) {
        const int d = w.index_bits == 8 ? w.deltas[j * 8 + l] : (w.deltas[j * 4 + l / 2] >> (4 * (l % 2))) & 15;
        col[l] = clampi(col[l] + d, kmax);
      }
      a0 = vfma(load4(vals + j * 8), gather4(x, col), a0);
      a1 = vfma(load4(vals + j * 8 + 4), gather4(x, col + 4), a1);
    }
    float out[8];
    vst1q_f32(out, a0);
    vst1q_f32(out + 4, a1);
    for (int l = 0; l < 8; ++l) {
      const int64_t li = g * 8 + l, row = w.perm[li];
      if (row_ok(row, w.n)) y[row] = out[l] * row_scale(w, li);
    }
  }
}

// ---------------------------------------------------------------- bsr, GEMV

// R x 1 blocks (R = 4, 16): R / 4 vectors of rows, x[col] broadcast.
template <typename T, int R>
void bsr_rows_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  constexpr int NV = R / 4;
  const T* vals = static_cast<const T*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1; ++b) {
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = vzero();
    for (int64_t i = w.ptr[b]; i < w.ptr[b + 1]; ++i) {
      const V xb = vset1(x[clampi(w.bcol[i], kbmax)]);
      for (int v = 0; v < NV; ++v) acc[v] = vfma(load4(vals + i * R + 4 * v), xb, acc[v]);
    }
    float out[R];
    for (int v = 0; v < NV; ++v) vst1q_f32(out + 4 * v, acc[v]);
    for (int a = 0; a < R; ++a) {
      const int64_t row = b * R + a;
      if (!row_ok(row, w.n)) break;
      y[row] = out[a] * row_scale(w, row);
    }
  }
}

// 1 x C blocks (C = 4, 8): C / 4 vectors of columns, x contiguous; one horizontal sum per row.
template <typename T, int C>
void bsr_cols_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  constexpr int NV = C / 4;
  const T* vals = static_cast<const T*>(w.values);
  const int64_t kbmax = w.kb - 1;
  for (int64_t b = u0; b < u1 && b < w.n; ++b) {
    V acc[NV];
    for (int v = 0; v < NV; ++v) acc[v] = vzero();
    for (int64_t i = w.ptr[b]; i < w.ptr[b + 1]; ++i) {
      const float* xb = x + clampi(w.bcol[i], kbmax) * C;
      for (int v = 0; v < NV; ++v) acc[v] = vfma(load4(vals + i * C + 4 * v), vld1q_f32(xb + 4 * v), acc[v]);
    }
    for (int v = 1; v < NV; ++v) acc[0] = vadd(acc[0], acc[v]);
    y[b] = hsum(acc[0]) * row_scale(w, b);
  }
}

// One overload per block shape (x86_entries.h dispatches through with_bsr_shape).
template <typename T>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<16, 1>) {
  bsr_rows_m1<T, 16>(w, u0, u1, x, y);
}
template <typename T>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<4, 1>) {
  bsr_rows_m1<T, 4>(w, u0, u1, x, y);
}
template <typename T, int C>
void bsr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y, BsrShape<1, C>) {
  bsr_cols_m1<T, C>(w, u0, u1, x, y);
}

// ---------------------------------------------------------------- nm, GEMV

// Every N:M pattern (NEON has no separate 2:4 / 4:8 GEMV: nm8_gemv is this one too).
template <typename T>
void nm_other_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const int64_t kc = w.kc;
  const int vpc = w.vpc;
  const T* vals = static_cast<const T*>(w.values);
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    V a0 = vzero(), a1 = a0;
    for (int64_t ch = 0; ch < kc; ++ch) {
      uint32_t bits = w.masks[row * kc + ch];
      const float* xc = x + ch * kNmChunk;
      const T* vp = vals + (row * kc + ch) * vpc;
      int i = 0;
      for (; i + 4 <= vpc; i += 4) {
        int64_t e[4];
        for (int l = 0; l < 4; ++l) {
          e[l] = __builtin_ctz(bits | 0x10000u) & 15;  // a mask short of bits reads column 0, as portable
          bits &= bits - 1;
        }
        V& a = (i & 4) ? a1 : a0;
        a = vfma(load4(vp + i), gather4(xc, e), a);
      }
      float s = 0.0f;
      for (; i < vpc; ++i) {
        const int e = __builtin_ctz(bits | 0x10000u) & 15;
        bits &= bits - 1;
        s += static_cast<float>(vp[i]) * xc[e];
      }
      a0 = vaddq_f32(a0, vsetq_lane_f32(s, vzero(), 0));
    }
    y[row] = hsum(vadd(a0, a1)) * row_scale(w, row);
  }
}

template <typename T>
void nm8_gemv(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  nm_other_m1<T>(w, u0, u1, x, y);
}

}  // namespace
}  // namespace spmm_neon

#define SLIMNN_SPMM_ISA spmm_neon
#define SLIMNN_SPMM_IF_neon(kind, name, gemv) SLIMNN_SPMM_DEFINE(kind, name, gemv)
#include "kernels/spmm/x86_entries.h"
#undef SLIMNN_SPMM_IF_neon
#undef SLIMNN_SPMM_ISA

}  // namespace slimnn
