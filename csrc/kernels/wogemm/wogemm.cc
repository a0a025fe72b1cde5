// The threaded wogemm drivers: blocking from the reported cache sizes, tasks over (column block, row
// block), per-thread scratch for the dequantized panel and the packed activations. Portable code.
#include "kernels/wogemm/wogemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>

#include "common/cache.h"
#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/act/act.h"

namespace slimnn {
namespace {

// The crossovers in M, measured on AMD EPYC Zen 4 (AVX-512, 32 KiB L1d, 1 MiB L2), 1 thread, with
// bench/tables/wo_crossover.py (both paths forced through set_wo_panel_min_rows and timed interleaved on the
// standard shapes at M = 128, and on 384x1536 and 4096x4096 at M in {8, 16, 32, 64}; the machine was
// shared, so single figures wobble by 20%):
//  - q4: the panel path is 0.94-0.98x the register-widening 4x16 kernel at M = 8, 1.09-1.17x at 16,
//    1.04-1.26x at 32 and 1.19-1.36x at M = 64-128 on every shape: widening nibbles (and, shift, subtract the
//    zero point) once per 4 rows costs more than converting once per call. Crossover 16.
//  - q8: on Zen 4 the 4x16 kernel's int8 -> fp32 widening runs on other ports than the FMAs, so it stays
//    near the FMA peak; the panel path ties it on the 384/1536-wide shapes (0.97-1.0x at M = 32-128) and is
//    0.85-0.92x on the 4096-wide ones at M = 32-128 (L2-resident panel, but K blocks of 280 re-read C).
//    No crossover up to M = 128, so 256 keeps the 4x16 kernel at every measured M here. On CPUs whose
//    conversions share the FMA ports (Intel's AVX-512 cores) the panel path should win at far fewer rows:
//    to be measured there (bench/tables/wo_crossover.py), not assumed.
// The AVX2 and portable pairs were not timed separately and take the same values.
constexpr int64_t kMeasuredMinRowsQ8 = 256, kMeasuredMinRowsQ4 = 16;
std::atomic<int64_t> g_min_rows{0};

// Per-thread scratch, grown on demand and kept (the drivers' OpenMP / pool threads live for the process):
// the panel is at most about L2 / 2, so a call never pays an allocation that maps fresh pages.
float* thread_scratch(int slot, int64_t count) {
  thread_local std::unique_ptr<float[], FreeDeleter> buf[2];
  thread_local int64_t cap[2] = {0, 0};
  if (cap[slot] < count) {
    buf[slot] = scratch<float>(count);
    cap[slot] = count;
  }
  return buf[slot].get();
}

struct Plan {
  int64_t kc;          // K block (multiple of 8)
  int64_t nc_panels;   // 16-column panels per column block
  int64_t n_nb, n_mb;  // column blocks, row blocks
  int64_t mb_rows;     // rows per row block (a multiple of mr)
};

// kc: the MR x kc activation block fills at most half of L1d (it is re-read by every micro-panel), balanced
// over kp so the last K block is not a sliver. Column block: the kc x cols fp32 panel fills at most half of
// L2 (re-read by every MR-row block). With several threads the column blocks shrink until each thread has
// about two (the panel is dequantized once per block, so splitting N costs nothing); only when N has fewer
// micro-panels than threads are rows split too (then each row block dequantizes its own copy).
Plan make_plan(int mr, int nr, int64_t m, int64_t kp, int64_t np, int nthreads) {
  const CacheSizes& cs = cache_sizes();
  Plan p;
  int64_t kc = (cs.l1d / 2) / (int64_t(mr) * 4);
  kc = std::max<int64_t>(64, std::min<int64_t>(1024, kc & ~int64_t{7}));
  const int64_t nk = (kp + kc - 1) / kc;
  p.kc = std::max<int64_t>(8, ((kp + nk - 1) / nk + 7) & ~int64_t{7});
  const int64_t micro = nr / 16, panels_total = np / 16;
  int64_t ncp = (cs.l2 / 2) / (p.kc * 4 * 16);
  ncp = std::max<int64_t>(micro, ncp / micro * micro);
  if (nthreads > 1) {
    const int64_t want = (panels_total + 2 * nthreads - 1) / (2 * nthreads);
    ncp = std::min(ncp, std::max<int64_t>(micro, (want + micro - 1) / micro * micro));
  }
  p.nc_panels = ncp;
  p.n_nb = (panels_total + ncp - 1) / ncp;
  const int64_t row_blocks = (m + mr - 1) / mr;
  int64_t n_mb = p.n_nb >= nthreads ? 1 : (nthreads + p.n_nb - 1) / std::max<int64_t>(1, p.n_nb);
  n_mb = std::max<int64_t>(1, std::min(n_mb, row_blocks));
  p.mb_rows = ((row_blocks + n_mb - 1) / n_mb) * mr;
  p.n_mb = (m + p.mb_rows - 1) / p.mb_rows;
  return p;
}

template <typename View, typename Fn>
void drive(Fn fn, int mr, int nr, const View& w, const float* x, int64_t m, int64_t ldx, const float* bias,
           float* y, int64_t ldy, int nthreads, const ActInfo* ak, int act) {
  if (m <= 0) return;
  nthreads = std::max(1, nthreads);
  if (w.k == 0) {  // no products: y = act(bias)
    for (int64_t r = 0; r < m; ++r)
      for (int64_t n = 0; n < w.n; ++n) y[r * ldy + n] = bias ? bias[n] : 0.0f;
    apply_activation(ak, act, y, m, w.n, ldy);
    return;
  }
  const Plan p = make_plan(mr, nr, m, w.kp, w.np, nthreads);
  const int64_t panels_total = w.np / 16;
  auto task = [&](int64_t t) {
    const int64_t nb = t / p.n_mb, mb = t % p.n_mb;
    const int64_t p0 = nb * p.nc_panels, panels = std::min(p.nc_panels, panels_total - p0);
    const int64_t r0 = mb * p.mb_rows, r1 = std::min(m, r0 + p.mb_rows);
    if (panels <= 0 || r0 >= r1) return;
    const int64_t n0 = p0 * 16;
    WoPanelTask tk;
    tk.x = x + r0 * ldx;
    tk.ldx = ldx;
    tk.m = r1 - r0;
    tk.p0 = p0;
    tk.panels = panels;
    tk.ncols = std::min<int64_t>(panels * 16, w.n - n0);
    tk.kc = p.kc;
    tk.bias = bias ? bias + n0 : nullptr;
    tk.y = y + r0 * ldy + n0;
    tk.ldy = ldy;
    tk.panel = thread_scratch(0, (panels * 16 + nr - 1) / nr * nr * p.kc);
    tk.apack = thread_scratch(1, int64_t(mr) * p.kc);
    tk.ak = ak;
    tk.act = act;
    fn(w, tk);
  };
  parallel_for(p.n_nb * p.n_mb, nthreads, task);
}

}  // namespace

int64_t wo_panel_min_rows(bool q4) {
  const int64_t v = g_min_rows.load(std::memory_order_relaxed);
  return v > 0 ? v : (q4 ? kMeasuredMinRowsQ4 : kMeasuredMinRowsQ8);
}

void set_wo_panel_min_rows(int64_t v) { g_min_rows.store(std::max<int64_t>(0, v), std::memory_order_relaxed); }

namespace {
int64_t amx_bf16_from_env() {
  const char* env = std::getenv("SLIMNN_WO_AMX_BF16");
  if (env == nullptr || *env == '\0') return kWoAmxBf16Off;
  char* end = nullptr;
  const long long v = std::strtoll(env, &end, 10);
  return (*end == '\0' && v > 0) ? static_cast<int64_t>(v) : kWoAmxBf16Off;  // 0, junk: off
}
std::atomic<int64_t>& amx_bf16_rows() {
  static std::atomic<int64_t> v{amx_bf16_from_env()};
  return v;
}
}  // namespace

int64_t wo_amx_bf16_min_rows() { return amx_bf16_rows().load(std::memory_order_relaxed); }

void set_wo_amx_bf16_min_rows(int64_t v) {
  amx_bf16_rows().store(v > 0 ? v : kWoAmxBf16Off, std::memory_order_relaxed);
}

int64_t wo_panel_kernel_min_rows(uint32_t isa) { return isa == kIsaAmxBf16 ? wo_amx_bf16_min_rows() : 0; }

void wo_panel_q8(Q8WoPanelFn fn, int mr, int nr, const Q8View& w, const float* x, int64_t m, int64_t ldx,
                 const float* bias, float* y, int64_t ldy, int nthreads, const ActInfo* ak, int act) {
  drive(fn, mr, nr, w, x, m, ldx, bias, y, ldy, nthreads, ak, act);
}

void wo_panel_q4(Q4WoPanelFn fn, int mr, int nr, const Q4View& w, const float* x, int64_t m, int64_t ldx,
                 const float* bias, float* y, int64_t ldy, int nthreads) {
  drive(fn, mr, nr, w, x, m, ldx, bias, y, ldy, nthreads, nullptr, 0);
}

}  // namespace slimnn
