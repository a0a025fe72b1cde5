// What the q8 (qgemm.cc) and q4 (q4gemm.cc) drivers share: the task plan and its column blocks, the
// activation staging (bf16, AWQ column factors, zero padding), the checked row quantization and the q8
// epilogue's column setup (also used by the conv and lowrank drivers). Portable code (no ISA flags): include
// it only from driver files, never from an ISA file.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>

#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace qdriver {

// Rows are handed out in chunks big enough to amortize a task (about 64K elements each).
inline int64_t rows_per_chunk(int64_t k) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(k, 1));
}

// n_nb column blocks of kernel_np panels, n_mb row blocks of mb_rows rows (a multiple of the kernel's mr).
struct Blocking {
  int64_t n_nb, n_mb, mb_rows;
};

// Column blocks are the natural unit (each task streams its own weights once); split rows as well only
// when there are too few column blocks to give every thread about two tasks.
inline Blocking plan(int mr, int kernel_np, int64_t m, int64_t w_np, int nthreads) {
  Blocking b;
  const int64_t panels = w_np / 16;
  b.n_nb = (panels + kernel_np - 1) / kernel_np;
  const int64_t row_blocks = (m + mr - 1) / mr;
  int64_t n_mb = (2 * int64_t(nthreads) + b.n_nb - 1) / b.n_nb;
  n_mb = std::max<int64_t>(1, std::min(n_mb, row_blocks));
  b.mb_rows = ((row_blocks + n_mb - 1) / n_mb) * mr;
  b.n_mb = (m + b.mb_rows - 1) / b.mb_rows;
  return b;
}

// Column block nb of kernel_np panels out of panels_total: its first panel p0, first column n0 = p0 * 16 and
// its panel count (the last block may be short).
struct ColBlock {
  int64_t p0, n0, panels;
};
inline ColBlock col_block(int64_t nb, int kernel_np, int64_t panels_total) {
  ColBlock c;
  c.p0 = nb * kernel_np;
  c.panels = std::min<int64_t>(kernel_np, panels_total - c.p0);
  c.n0 = c.p0 * 16;
  return c;
}

// Runs body(nb, r0, r1) for every task of plan b (column block nb x row block [r0, r1)), on nthreads.
// One row block over many column blocks (decode, M = 1, a 16-column kernel: an N = 49152 head is 3072 blocks):
// each task is a contiguous run of column blocks, about 4 runs per thread. Handing out single blocks had the
// threads alternate 16-column panels, so neither streamed its weights in order (the prefetchers' and the
// kernel's software prefetch ran into the other thread's panel) and every 0.3 us block took a contended atomic;
// 2 threads decoded SmolLM2 no faster than 1 on a Zen 3. The blocks and their results are the same.
template <typename Body>
inline void parallel_blocks(const Blocking& b, int64_t m, int nthreads, Body&& body) {
  const int64_t runs = 4 * int64_t(nthreads);
  if (b.n_mb == 1 && nthreads > 1 && b.n_nb > runs) {
    const int64_t per = (b.n_nb + runs - 1) / runs;
    auto run = [&](int64_t t) {
      for (int64_t nb = t * per, end = std::min(b.n_nb, nb + per); nb < end; ++nb) body(nb, 0, m);
    };
    parallel_for((b.n_nb + per - 1) / per, nthreads, run);
    return;
  }
  auto task = [&](int64_t t) {
    const int64_t nb = t / b.n_mb, mb = t % b.n_mb;
    body(nb, mb * b.mb_rows, std::min(m, (mb + 1) * b.mb_rows));
  };
  parallel_for(b.n_nb * b.n_mb, nthreads, task);
}

// Rows [r0, r1) in micro-kernel steps: body(r, rows) with rows = min(mr, r1 - r).
template <typename Body>
inline void for_row_steps(int64_t r0, int64_t r1, int mr, Body&& body) {
  for (int64_t r = r0; r < r1; r += mr) body(r, static_cast<int>(std::min<int64_t>(mr, r1 - r)));
}

// The q8 epilogue fields that depend on the weights only (a_scale, a_zp, y: the caller's, per row step).
inline Q8Epilogue q8_epilogue(const Q8View& w, int64_t ldy) {
  Q8Epilogue e;
  std::memset(&e, 0, sizeof e);
  e.np = w.np;
  e.group_k4 = w.group_size / 4;
  e.n_groups = w.n_groups;
  e.ldy = ldy;
  return e;
}
// base with its weight columns moved to column block c; bias already offset to w's first column (or null).
inline Q8Epilogue q8_block_epilogue(const Q8Epilogue& base, const Q8View& w, const float* bias, const ColBlock& c) {
  Q8Epilogue e = base;
  e.scales = w.scales + c.n0;
  e.colsum = w.colsum + c.n0;
  e.comp = w.comp + c.n0;
  e.bias = bias ? bias + c.n0 : nullptr;
  e.ncols = std::min<int64_t>(c.panels * 16, w.n - c.n0);
  return e;
}

// Row r of x as fp32 with the column factors applied (in_mul may be null); returns x's own row when
// nothing needs doing, else tmp (k floats).
inline const float* load_row(const void* x, bool x_bf16, int64_t r, int64_t ldx, int64_t k, const float* in_mul,
                             float* tmp) {
  if (!x_bf16 && in_mul == nullptr) return static_cast<const float*>(x) + r * ldx;
  if (x_bf16) {
    const uint16_t* xb = static_cast<const uint16_t*>(x) + r * ldx;
    for (int64_t i = 0; i < k; ++i) tmp[i] = bf16_to_f32(xb[i]);
  } else {
    std::memcpy(tmp, static_cast<const float*>(x) + r * ldx, k * sizeof(float));
  }
  if (in_mul)
    for (int64_t i = 0; i < k; ++i) tmp[i] *= in_mul[i];
  return tmp;
}

// Quantizes one row with the kernel's quantizer; a row holding a NaN or an infinity gets zero codes, scale
// and zero point (the kernel's reads stay defined; nan_rows overwrites its output). Returns finiteness.
template <typename Quantize>
inline bool quantize_row(Quantize quantize, const float* row, int64_t k, int64_t kp, uint8_t* a, float* scale,
                         int32_t* zp) {
  const bool finite = quantize(row, k, kp, a, scale, zp);
  if (!finite) {
    std::memset(a, 0, kp);
    *scale = 0.0f;
    *zp = 0;
  }
  return finite;
}

// Rows [r0, r1) whose input was not finite become NaN rows of n outputs.
inline void nan_rows(const uint8_t* finite, int64_t r0, int64_t r1, float* y, int64_t ldy, int64_t n) {
  for (int64_t r = r0; r < r1; ++r)
    if (!finite[r]) std::fill(y + r * ldy, y + r * ldy + n, std::numeric_limits<float>::quiet_NaN());
}

// The weight-only kernels read kp floats per row: x itself when it already has that form, else a staged
// copy (bf16 widened, column factors applied, zero padded from k to kp) in *buf. Sets *lda.
inline const float* stage_wo_input(const void* x, bool x_bf16, int64_t m, int64_t ldx, int64_t k, int64_t kp,
                                   const float* in_mul, int nthreads, std::unique_ptr<float[], FreeDeleter>* buf,
                                   int64_t* lda) {
  *lda = ldx;
  if (!x_bf16 && kp == k && in_mul == nullptr) return static_cast<const float*>(x);
  *buf = scratch<float>(m * kp);
  float* xb = buf->get();
  const int64_t chunk = rows_per_chunk(k);
  auto convert = [&](int64_t t) {
    const int64_t r0 = t * chunk, r1 = std::min(m, r0 + chunk);
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = xb + r * kp;
      const float* row = load_row(x, x_bf16, r, ldx, k, in_mul, dst);
      if (row != dst) std::memcpy(dst, row, k * sizeof(float));
      for (int64_t i = k; i < kp; ++i) dst[i] = 0.0f;
    }
  };
  parallel_for((m + chunk - 1) / chunk, nthreads, convert);
  *lda = kp;
  return xb;
}

}  // namespace qdriver
}  // namespace slimnn
