// The threaded qgemm drivers: prepare activations, split the output into (column block, row block) tasks,
// run the selected micro-kernel on each. Compiled without ISA flags: all SIMD lives in the ISA files.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/act/act.h"
#include "kernels/qgemm/driver.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {
namespace {

// Non-finite policy (docs/reliability.md): a row whose activations hold a NaN or an infinity, or are so large
// that an intermediate of the integer kernels could overflow (|x| > kQ8RowLimit / kp; below it every partial sum
// of both kernel families stays under FLT_MAX / 2), is computed here instead, in float32 from the dequantized
// weights: y[n] = act(sum_k x[k] * (q[n][k] * scale[g][n]) + bias[n]), the float computation of the same weights.
// So each output element is NaN or +-inf exactly where x @ W_deq^T + b has one, on every ISA. Scalar: such rows
// are rare, and the hot path pays only a check of values it already has (dyn) or one max pass per row (wo).
constexpr float kQ8RowLimit = std::numeric_limits<float>::max() / 65536.0f;

bool row_needs_float(const float* x, int64_t k, int64_t kp) {
  const float limit = kQ8RowLimit / float(kp);
  int32_t lim;
  std::memcpy(&lim, &limit, 4);
  int32_t bad = 0;
  for (int64_t i = 0; i < k; ++i) {  // integer compares: vectorizes (about 75 ns for K = 384 at SSE2)
    int32_t b;
    std::memcpy(&b, x + i, 4);
    bad |= (b & 0x7fffffff) > lim;  // |x| > limit, +-inf and NaN alike: for |x|, IEEE order is integer order
  }
  return bad != 0;
}

void q8_row_float(const float* x, const Q8View& w, const float* bias, float* y) {
  for (int64_t n = 0; n < w.n; ++n) {
    const int8_t* wp = w.w + (n / 16) * 16 * w.kp;
    const int64_t c = n % 16;
    float acc = 0.0f;
    for (int64_t k = 0; k < w.k; ++k) {
      const int64_t g = w.n_groups == 1 ? 0 : k / w.group_size;
      const float wk = float(wp[(k / 4) * 64 + c * 4 + k % 4]) * w.scales[g * w.np + n];
      acc += x[k] * wk;
    }
    y[n] = bias ? acc + bias[n] : acc;
  }
}

// Runs the dyn micro-kernel over rows [r0, r1) of column block nb (then the activation, while hot); a holds
// the quantized rows (kp bytes each), a_scale / a_zp their parameters.
void dyn_block(const KernelInfo* ki, const Q8Epilogue& base, const Q8View& w, const uint8_t* a, const float* a_scale,
               const int32_t* a_zp, const float* bias, float* y, int64_t ldy, const ActInfo* ak, int act, int64_t nb,
               int64_t r0, int64_t r1) {
  const int64_t panels_total = w.np / 16, kp = w.kp;
  const auto uk = reinterpret_cast<Q8DynUkernel>(ki->fn);
  const qdriver::ColBlock c = qdriver::col_block(nb, ki->np, panels_total);
  Q8Epilogue e = qdriver::q8_block_epilogue(base, w, bias, c);
  qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
    e.a_scale = a_scale + r;
    e.a_zp = a_zp + r;
    e.y = y + r * ldy + c.n0;
    uk(mr, static_cast<int>(c.panels), a + r * kp, kp, w.w + c.p0 * 16 * kp, kp, e);
    apply_activation(ak, act, e.y, mr, e.ncols, ldy);
  });
}

// Rows in [r0, r1) that the quantizer refused (finite[r] == 0): float32 from the dequantized weights.
void refused_rows(const uint8_t* finite, const void* x, bool x_bf16, int64_t ldx, const Q8View& w, const float* bias,
                  float* y, int64_t ldy, const ActInfo* ak, int act, int64_t r0, int64_t r1) {
  std::unique_ptr<float[], FreeDeleter> tmp;
  for (int64_t r = r0; r < r1; ++r) {
    if (finite[r]) continue;
    if (x_bf16 && !tmp) tmp = scratch<float>(w.k);
    const float* row = qdriver::load_row(x, x_bf16, r, ldx, w.k, nullptr, tmp.get());
    q8_row_float(row, w, bias, y + r * ldy);
    apply_activation(ak, act, y + r * ldy, 1, w.n, ldy);
  }
}

}  // namespace

const KernelInfo* q8_linear(KernelKind kind, const void* x, bool x_bf16, int64_t m, int64_t ldx, const Q8View& w,
                            const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask, int act,
                            int split) {
  const KernelInfo* ki = select_linear_kernel(kind, m, isa_mask);
  q8_linear_with(ki, x, x_bf16, m, ldx, w, bias, y, ldy, nthreads, isa_mask, act, split);
  return ki;
}

void q8_linear_with(const KernelInfo* ki, const void* x, bool x_bf16, int64_t m, int64_t ldx, const Q8View& w,
                    const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask, int act, int split) {
  const KernelKind kind = ki->kind;
  const ActInfo* ak = act != 0 ? select_act(isa_mask) : nullptr;  // nothing to select without an activation
  if (m <= 0) return;
  nthreads = std::max(1, nthreads);
  const int64_t k = w.k, kp = w.kp;
  const qdriver::Blocking b = qdriver::plan(ki->mr, ki->np, m, w.np, nthreads);
  const int64_t panels_total = w.np / 16;

  const Q8Epilogue base = qdriver::q8_epilogue(w, ldy);

  if (kind == KernelKind::kQ8Dyn) {
    auto a = scratch<uint8_t>(m * kp);
    auto a_scale = scratch<float>(m);
    auto a_zp = scratch<int32_t>(m);
    auto finite = scratch<uint8_t>(m);
    const int64_t chunk = qdriver::rows_per_chunk(k);
    // The kernel's quantizer, also refusing rows so large that an integer intermediate could overflow.
    auto quantize_checked = [&](const float* row, int64_t kk, int64_t kkp, uint8_t* ar, float* sc, int32_t* zp) {
      return ki->quantize(row, kk, kkp, ar, sc, zp) && !(*sc > kQ8RowLimit / (255.0f * float(kkp)));
    };
    auto quantize_rows = [&](int64_t r0, int64_t r1) {
      std::unique_ptr<float[], FreeDeleter> tmp;
      if (x_bf16) tmp = scratch<float>(k);
      for (int64_t r = r0; r < r1; ++r) {
        const float* row = qdriver::load_row(x, x_bf16, r, ldx, k, nullptr, tmp.get());
        // Rows refused here get zero codes (the kernel's reads stay defined); float_rows overwrites them.
        finite[r] = qdriver::quantize_row(quantize_checked, row, k, kp, a.get() + r * kp, &a_scale[r], &a_zp[r]);
      }
    };
    auto run_block = [&](int64_t nb, int64_t r0, int64_t r1) {
      dyn_block(ki, base, w, a.get(), a_scale.get(), a_zp.get(), bias, y, ldy, ak, act, nb, r0, r1);
    };
    auto float_rows = [&](int64_t r0, int64_t r1) {
      refused_rows(finite.get(), x, x_bf16, ldx, w, bias, y, ldy, ak, act, r0, r1);
    };
    // Many rows and weights that stay in a core's L2: each task quantizes its own rows and computes all their
    // columns, one parallel region instead of two (no barrier between quantization and GEMM; the rows are
    // still in cache). Each task streams all of W, hence the size limit. Derived on MiniLM shapes (M = 480,
    // K, N in {384, 1536}, Zen 4, 2 threads); the limit (4 MiB packed, about L2 x 4) is a guess, untested
    // between 2.4 MiB (768x3072) and 16 MiB (4096x4096), which keep the split below.
    const int64_t row_blocks = (m + ki->mr - 1) / ki->mr;
    const bool rows_auto = nthreads > 1 && w.np * kp <= (int64_t{4} << 20) && row_blocks >= int64_t(nthreads) * 16;
    if (split == kSplitRows || (split == kSplitAuto && rows_auto)) {
      const int64_t n_tasks = 2 * int64_t(nthreads);
      const int64_t rows_task = ((row_blocks + n_tasks - 1) / n_tasks) * ki->mr;
      auto task = [&](int64_t t) {
        const int64_t r0 = t * rows_task, r1 = std::min(m, r0 + rows_task);
        if (r0 >= r1) return;
        quantize_rows(r0, r1);
        for (int64_t nb = 0; nb < b.n_nb; ++nb) run_block(nb, r0, r1);
        float_rows(r0, r1);
      };
      parallel_for(n_tasks, nthreads, task);
      return;
    }
    auto quantize = [&](int64_t t) {
      const int64_t r0 = t * chunk;
      quantize_rows(r0, std::min(m, r0 + chunk));
    };
    parallel_for((m + chunk - 1) / chunk, nthreads, quantize);
    qdriver::parallel_blocks(b, m, nthreads, run_block);
    float_rows(0, m);
    return;
  }

  // Weight-only: the kernel reads kp floats per row (x in place when it already has that shape).
  // The panel path (kernels/wogemm) reads only the k real values of each row: fp32 x is used in place.
  const bool panel = ki->kind == KernelKind::kQ8WoPanel;
  std::unique_ptr<float[], FreeDeleter> xbuf;
  int64_t lda = ldx;
  const float* xf = panel && !x_bf16 ? static_cast<const float*>(x)
                                     : qdriver::stage_wo_input(x, x_bf16, m, ldx, k, kp, nullptr, nthreads, &xbuf, &lda);
  if (panel)
    wo_panel_q8(reinterpret_cast<Q8WoPanelFn>(ki->fn), ki->mr, ki->np * 16, w, xf, m, lda, bias, y, ldy, nthreads,
                ak, act);
  const auto uk = reinterpret_cast<Q8WoUkernel>(ki->fn);
  auto run_block = [&](int64_t nb, int64_t r0, int64_t r1) {
    const qdriver::ColBlock c = qdriver::col_block(nb, ki->np, panels_total);
    Q8Epilogue e = qdriver::q8_block_epilogue(base, w, bias, c);
    qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
      e.y = y + r * ldy + c.n0;
      uk(mr, static_cast<int>(c.panels), xf + r * lda, lda, w.w + c.p0 * 16 * kp, kp, e);
      apply_activation(ak, act, e.y, mr, e.ncols, ldy);
    });
  };
  if (!panel) qdriver::parallel_blocks(b, m, nthreads, run_block);
  // Rows with NaN/inf or overflow-sized values: float32 from the dequantized weights (see q8_row_float).
  for (int64_t r = 0; r < m; ++r) {
    const float* row = xf + r * lda;
    if (row_needs_float(row, k, kp)) {
      q8_row_float(row, w, bias, y + r * ldy);
      apply_activation(ak, act, y + r * ldy, 1, w.n, ldy);
    }
  }
}

const KernelInfo* q8_linear_prequantized(const uint8_t* a, const float* a_scale, const int32_t* a_zp, const float* x,
                                         int64_t m, int64_t ldx, const Q8View& w, const float* bias, float* y,
                                         int64_t ldy, int nthreads, uint32_t isa_mask, int act) {
  const KernelInfo* ki = select_linear_kernel(KernelKind::kQ8Dyn, m, isa_mask);
  const ActInfo* ak = act != 0 ? select_act(isa_mask) : nullptr;
  if (m <= 0) return ki;
  nthreads = std::max(1, nthreads);
  const qdriver::Blocking b = qdriver::plan(ki->mr, ki->np, m, w.np, nthreads);
  const Q8Epilogue base = qdriver::q8_epilogue(w, ldy);
  // A row the caller's quantizer refused has scale 0 (the driver's own convention); NaN counts as refused too.
  auto finite = scratch<uint8_t>(m);
  for (int64_t r = 0; r < m; ++r) finite[r] = a_scale[r] > 0.0f;
  qdriver::parallel_blocks(b, m, nthreads, [&](int64_t nb, int64_t r0, int64_t r1) {
    dyn_block(ki, base, w, a, a_scale, a_zp, bias, y, ldy, ak, act, nb, r0, r1);
  });
  refused_rows(finite.get(), x, false, ldx, w, bias, y, ldy, ak, act, 0, m);
  return ki;
}

void q8_dot_i32(const KernelInfo* ki, const uint8_t* a, int64_t m, int64_t lda, const Q8View& w, int32_t* out) {
  const int64_t panels_total = w.np / 16;
  for (int64_t r = 0; r < m; r += ki->mr) {
    const int mr = static_cast<int>(std::min<int64_t>(ki->mr, m - r));
    for (int64_t p0 = 0; p0 < panels_total; p0 += ki->np) {
      const int panels = static_cast<int>(std::min<int64_t>(ki->np, panels_total - p0));
      ki->dot(mr, panels, a + r * lda, lda, w.w + p0 * 16 * w.kp, w.kp, out + r * w.np + p0 * 16, w.np);
    }
  }
}

}  // namespace slimnn
