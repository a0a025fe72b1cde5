// The threaded q4 driver: prepare activations (AWQ factor, bf16, row quantization and group sums), split
// the output into (column block, row block) tasks, run the selected micro-kernel on each. Compiled without
// ISA flags: all SIMD lives in the ISA files.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/wogemm/wogemm.h"
#include "kernels/qgemm/driver.h"

namespace slimnn {

using qdriver::load_row;
using qdriver::rows_per_chunk;

namespace {

Q4Epilogue base_epilogue(const Q4View& w) {
  Q4Epilogue e;
  std::memset(&e, 0, sizeof e);
  e.scale_dtype = w.scale_dtype;
  e.np = w.np;
  e.group_k8 = w.group_size / 8;
  e.n_groups = w.n_groups;
  return e;
}

// base with its weight columns moved to column block c (bias: w's first column, or null).
Q4Epilogue block_epilogue(const Q4Epilogue& base, const Q4View& w, const float* bias, const qdriver::ColBlock& c) {
  Q4Epilogue e = base;
  const int64_t n0 = c.n0;
  const int sb = w.scale_dtype == ScaleDtype::kF32 ? 4 : 2;
  e.scales = static_cast<const uint8_t*>(w.scales) + n0 * w.n_groups * sb;  // panel n0/16, group 0
  e.zeros = w.zeros ? w.zeros + n0 * w.n_groups : nullptr;
  e.fzeros = w.fzeros ? static_cast<const uint8_t*>(w.fzeros) + n0 * w.n_groups * sb : nullptr;  // q4_linear_with
                                                                                              // keeps it for fz_fused kernels only
  e.colsum = w.colsum ? w.colsum + n0 : nullptr;
  e.comp = w.comp + n0;
  e.bias = bias ? bias + n0 : nullptr;
  e.ncols = std::min<int64_t>(c.panels * 16, w.n - n0);
  return e;
}

// Sums of each group of a row (k in [g*gs, min((g+1)*gs, end))): of the quantized activations (int32; zeros
// past k add nothing) and, for float zero points, of the float ones (the inputs of the offsets' term).
template <typename T, typename S>
void group_sums(const T* a, int64_t end, int64_t gs, int64_t ng, S* out) {
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t k1 = std::min(end, (g + 1) * gs);
    S s = 0;
    for (int64_t i = g * gs; i < k1; ++i) s += a[i];
    out[g] = s;
  }
}

struct FzFns {
  Q4FzGroupSums sums;
  Q4FzOffsetPanel panel;
};

// The float-zero helpers of the best ISA in isa_mask (the kernels' mask, so a forced portable path stays portable).
FzFns fz_fns(uint32_t isa_mask) {
#if defined(SLIMNN_BUILT_AVX512)
  if (isa_mask & kIsaAvx512) return {&q4_fz_group_sums__avx512, &q4_fz_offset_panel__avx512};
#endif
#if defined(SLIMNN_BUILT_AVX2)
  if (isa_mask & kIsaAvx2) return {&q4_fz_group_sums__avx2, &q4_fz_offset_panel__avx2};
#endif
#if defined(SLIMNN_BUILT_NEON)
  if (isa_mask & kIsaNeon) return {&q4_fz_group_sums__neon, &q4_fz_offset_panel__neon};
#endif
  (void)isa_mask;
  return {&q4_fz_group_sums__portable, &q4_fz_offset_panel__portable};
}

// Float zero points (zero mode 2): the kernels computed x . s (u - 8); add
// sum_g o[g][n] * xsum[m][g] with the blob's offsets o = s (8 - z) ([np/16][n_groups][16], fp32) to rows
// [r, r + rows) of the panels [p0, p0 + panels). Each row's sum runs over g in order whatever the row count,
// so the bits do not depend on how rows and panels are split into calls.
void add_offset_term(const FzFns& fz, const Q4View& w, const float* xsum, int64_t r, int64_t rows, int64_t p0,
                     int64_t panels, float* y, int64_t ldy) {
  const int64_t ng = w.n_groups;
  for (int64_t p = p0; p < p0 + panels && p * 16 < w.n; ++p) {
    const int64_t n0 = p * 16;
    fz.panel(w.offsets + q4_sz_index(0, n0, ng), ng, xsum + r * ng, rows, y + r * ldy + n0, ldy,
             static_cast<int>(std::min<int64_t>(16, w.n - n0)));
  }
}

// The same over all m rows and every panel, one task per panel (after the panel kernels of kernels/wogemm).
void add_offset_term_all(const FzFns& fz, const Q4View& w, const float* xsum, int64_t m, float* y, int64_t ldy,
                         int nthreads) {
  auto task = [&](int64_t p) { add_offset_term(fz, w, xsum, 0, m, p, 1, y, ldy); };
  parallel_for(w.np / 16, nthreads, task);
}

// Panels per column block: the kernel's np, or fewer when that evens out the threads' shares of a single row
// block (M = 1 decode: N = 576 is 36 panels, which blocks of 4 split 20 : 16 over two threads and blocks of 3
// split 18 : 18). A thread's share is taken as ceil(blocks / threads) whole blocks (the tasks are handed out
// dynamically, all about the same size); the largest np reaching the smallest share wins.
int task_panels(int kernel_np, int64_t panels, int64_t row_blocks, int nthreads) {
  if (nthreads <= 1 || row_blocks > 1 || panels <= 0) return kernel_np;
  int best = kernel_np;
  int64_t best_share = std::numeric_limits<int64_t>::max();
  for (int np = kernel_np; np >= 1; --np) {
    const int64_t blocks = (panels + np - 1) / np;
    const int64_t share = std::min(panels, (blocks + nthreads - 1) / nthreads * np);
    if (share < best_share) best = np, best_share = share;
  }
  return best;
}

}  // namespace

const Q4KernelInfo* q4_linear(Q4KernelKind kind, const void* x, bool x_bf16, int64_t m, int64_t ldx,
                              const float* in_mul, const Q4View& w, const float* bias, float* y, int64_t ldy,
                              int nthreads, uint32_t isa_mask) {
  const Q4KernelInfo* ki = q4_select_kernel(kind, m, isa_mask);
  q4_linear_with(ki, x, x_bf16, m, ldx, in_mul, w, bias, y, ldy, nthreads, isa_mask);
  return ki;
}

void q4_linear_with(const Q4KernelInfo* ki, const void* x, bool x_bf16, int64_t m, int64_t ldx, const float* in_mul,
                    const Q4View& w, const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask) {
  if (m <= 0) return;
  nthreads = std::max(1, nthreads);
  const int64_t k = w.k, kp = w.kp, ng = w.n_groups;
  const int64_t panels_total = w.np / 16;
  const int np_task = task_panels(ki->np, panels_total, (m + ki->mr - 1) / ki->mr, nthreads);
  const qdriver::Blocking b = qdriver::plan(ki->mr, np_task, m, w.np, nthreads);
  Q4Epilogue base = base_epilogue(w);
  base.ldy = ldy;
  const int64_t chunk = rows_per_chunk(k);
  std::unique_ptr<float[], FreeDeleter> xsum;
  if (w.fzeros) xsum = scratch<float>(m * ng);
  const FzFns fz = fz_fns(isa_mask);

  if (ki->kind == Q4KernelKind::kQ4Dyn) {
    auto a = scratch<uint8_t>(m * kp);
    auto a_scale = scratch<float>(m);
    auto a_zp = scratch<int32_t>(m);
    auto a_sum = scratch<int32_t>(m * ng);
    auto finite = scratch<uint8_t>(m);
    auto quantize = [&](int64_t t) {
      const int64_t r0 = t * chunk, r1 = std::min(m, r0 + chunk);
      std::unique_ptr<float[], FreeDeleter> tmp;
      if (x_bf16 || in_mul) tmp = scratch<float>(k);
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = load_row(x, x_bf16, r, ldx, k, in_mul, tmp.get());
        uint8_t* ar = a.get() + r * kp;
        finite[r] = qdriver::quantize_row(ki->quantize, row, k, kp, ar, &a_scale[r], &a_zp[r]);
        group_sums(ar, kp, w.group_size, ng, a_sum.get() + r * ng);
        if (xsum) fz.sums(row, k, w.group_size, ng, xsum.get() + r * ng);
      }
    };
    parallel_for((m + chunk - 1) / chunk, nthreads, quantize);
    const auto uk = reinterpret_cast<Q4DynUkernel>(ki->fn);
    const bool fused = xsum && ki->fz_fused;
    auto run_block = [&](int64_t nb, int64_t r0, int64_t r1) {
      const qdriver::ColBlock c = qdriver::col_block(nb, np_task, panels_total);
      Q4Epilogue e = block_epilogue(base, w, bias, c);
      if (!fused) e.fzeros = nullptr;
      qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
        e.a_scale = a_scale.get() + r;
        e.a_zp = a_zp.get() + r;
        e.a_sum = a_sum.get() + r * ng;
        e.xsum = fused ? xsum.get() + r * ng : nullptr;
        e.y = y + r * ldy + c.n0;
        uk(mr, static_cast<int>(c.panels), a.get() + r * kp, kp, w.w + c.p0 * 8 * kp, kp, e);
      });
      // In the same task (its outputs still in cache; no second pass over the threads).
      if (xsum && !fused) add_offset_term(fz, w, xsum.get(), r0, r1 - r0, c.p0, c.panels, y, ldy);
    };
    qdriver::parallel_blocks(b, m, nthreads, run_block);
    qdriver::nan_rows(finite.get(), 0, m, y, ldy, w.n);
    return;
  }

  // Weight-only: the kernel reads kp floats per row (x in place when it already has that shape).
  // The panel path (kernels/wogemm) reads only the k real values of each row: plain fp32 x is used in place.
  const bool panel = ki->kind == Q4KernelKind::kQ4WoPanel;
  std::unique_ptr<float[], FreeDeleter> xbuf;
  int64_t lda = ldx;
  const float* xf = panel && !x_bf16 && in_mul == nullptr
                        ? static_cast<const float*>(x)
                        : qdriver::stage_wo_input(x, x_bf16, m, ldx, k, kp, in_mul, nthreads, &xbuf, &lda);
  if (xsum) {
    auto sums = [&](int64_t t) {
      for (int64_t r = t * chunk, r1 = std::min(m, r + chunk); r < r1; ++r)
        fz.sums(xf + r * lda, k, w.group_size, ng, xsum.get() + r * ng);
    };
    parallel_for((m + chunk - 1) / chunk, nthreads, sums);
  }
  if (panel) {
    wo_panel_q4(reinterpret_cast<Q4WoPanelFn>(ki->fn), ki->mr, ki->np * 16, w, xf, m, lda, bias, y, ldy, nthreads);
    if (xsum) add_offset_term_all(fz, w, xsum.get(), m, y, ldy, nthreads);
    return;
  }
  const auto uk = reinterpret_cast<Q4WoUkernel>(ki->fn);
  auto run_block = [&](int64_t nb, int64_t r0, int64_t r1) {
    const qdriver::ColBlock c = qdriver::col_block(nb, np_task, panels_total);
    Q4Epilogue e = block_epilogue(base, w, bias, c);
    e.fzeros = nullptr;
    qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
      e.y = y + r * ldy + c.n0;
      uk(mr, static_cast<int>(c.panels), xf + r * lda, lda, w.w + c.p0 * 8 * kp, kp, e);
    });
    if (xsum) add_offset_term(fz, w, xsum.get(), r0, r1 - r0, c.p0, c.panels, y, ldy);
  };
  qdriver::parallel_blocks(b, m, nthreads, run_block);
}

void q4_fz_group_sums__portable(const float* x, int64_t k, int64_t gs, int64_t ng, float* out) {
  group_sums(x, k, gs, ng, out);
}

void q4_fz_offset_panel__portable(const float* off, int64_t ng, const float* xsum, int64_t m, float* y, int64_t ldy,
                                  int nc) {
  for (int64_t r = 0; r < m; ++r) {
    float acc[16] = {0};
    const float* xs = xsum + r * ng;
    for (int64_t g = 0; g < ng; ++g)
      for (int64_t c = 0; c < 16; ++c) acc[c] += off[g * 16 + c] * xs[g];
    for (int64_t c = 0; c < nc; ++c) y[r * ldy + c] += acc[c];
  }
}

void q4_dot_i32(const Q4KernelInfo* ki, const uint8_t* a, int64_t m, int64_t lda, const Q4View& w, int32_t* out) {
  const int64_t panels_total = w.np / 16, ng = w.n_groups;
  auto a_sum = scratch<int32_t>(std::max<int64_t>(1, m * ng));
  for (int64_t r = 0; r < m; ++r) group_sums(a + r * lda, w.kp, w.group_size, ng, a_sum.get() + r * ng);
  Q4Epilogue base = base_epilogue(w);
  for (int64_t r = 0; r < m; r += ki->mr) {
    const int mr = static_cast<int>(std::min<int64_t>(ki->mr, m - r));
    for (int64_t p0 = 0; p0 < panels_total; p0 += ki->np) {
      const int panels = static_cast<int>(std::min<int64_t>(ki->np, panels_total - p0));
      Q4Epilogue e = block_epilogue(base, w, nullptr, qdriver::col_block(p0 / ki->np, ki->np, panels_total));
      e.fzeros = nullptr;
      e.a_sum = a_sum.get() + r * ng;
      ki->dot(mr, panels, a + r * lda, lda, w.w + p0 * 8 * w.kp, w.kp, e, out + r * ng * w.np + p0 * 16,
              ng * w.np);
    }
  }
}

}  // namespace slimnn
