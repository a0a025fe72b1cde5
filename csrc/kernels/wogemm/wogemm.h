// wogemm: the weight-only int8 (q8) and int4 (q4) GEMM for many rows, y = act(x W^T + bias) with fp32
// activations, as a dequantize-then-fp32-GEMM (the q8/q4 weight-only kernels of qgemm/q4gemm widen the
// weights in registers for every block of 1-4 rows, so at large M they convert each weight M/4 times; this
// path converts each weight once per call).
//
// Per task (a block of output columns x a range of rows) and per K block of kc values:
//   1. dequantize the weights of the block into an fp32 panel, W_deq[n][k] = q[n][k] * scale[g][n] (q8) or
//      (u[n][k] - z[g][n]) * scale[g][n] (q4): the exact float32 product, the same numbers as the reference's
//      dequantized weight. Layout [ceil(cols / NR)][kc][NR] (NR-column micro-panels, k-major, zero padded);
//   2. for each MR-row block: copy its kc activations into [kc][MR] (one pointer for the micro-kernel's
//      broadcasts), then run the MR x NR register-blocked fp32 micro-kernel (broadcast-FMA) over every
//      micro-panel; C is stored at the first K block and accumulated at later ones, the bias is added at the
//      last, and the activation runs on the block's rows while they are in cache.
// kc and the column block are derived from the cache sizes the CPU reports (common/cache.h): the MR x kc
// activation block stays in half of L1d, the kc x cols weight panel in half of L2 (wogemm.cc).
//
// The entries are listed in qgemm/kernels.inc (kind kQ8WoPanel) and q4gemm/kernels.inc (kQ4WoPanel), so
// the selectors, slimnn.kernels() and `repr` show them; each entry's fn is one of the task functions below.
#pragma once
#include <cstdint>

#include "formats/q4.h"
#include "formats/q8.h"

namespace slimnn {

struct ActInfo;

struct WoPanelTask {
  const float* x;      // first row of the task; row stride ldx; k valid values per row (no padding read)
  int64_t ldx;
  int64_t m;           // rows of the task
  int64_t p0, panels;  // the block's first 16-column panel of W and its number of panels
  int64_t ncols;       // valid output columns of the block (<= panels * 16)
  int64_t kc;          // K block, a multiple of 8
  const float* bias;   // at the block's first column, or null
  float* y;            // the task's first row and the block's first column; row stride ldy
  int64_t ldy;
  float* panel;        // scratch, 64-byte aligned: ceil(panels * 16 / NR) * NR * kc floats
  float* apack;        // scratch, 64-byte aligned: MR * kc floats
  const ActInfo* ak;   // activation kernel (null when act == 0)
  int act;
};

using Q8WoPanelFn = void (*)(const Q8View& w, const WoPanelTask& t);
using Q4WoPanelFn = void (*)(const Q4View& w, const WoPanelTask& t);

// Rows from which the weight-only ops take this path, per format (q4 = false: q8; see wogemm.cc for how
// they were measured). set_wo_panel_min_rows(v): v > 0 overrides both (tests and the crossover benchmark
// force either path), 0 restores the measured values. Process-wide, atomic.
int64_t wo_panel_min_rows(bool q4);
void set_wo_panel_min_rows(int64_t v);

// The AMX-BF16 panel kernels (amx_bf16.h: weights and activations rounded to bf16, tdpbf16ps, fp32 sums)
// are opt-in: they are selected only from wo_amx_bf16_min_rows() rows on, where the CPU has amx_bf16 (and it
// is not forced below it). Off by default (returns kWoAmxBf16Off): its crossover against the fp32 panel path
// is NOT MEASURED (no AMX machine so far) and it changes the numbers (bf16 rounding, docs/amx.md). Switched on
// by SLIMNN_WO_AMX_BF16=<rows> in the environment (read once, at the first call) or
// set_wo_amx_bf16_min_rows(rows > 0); set_wo_amx_bf16_min_rows(0) turns it off again. Process-wide, atomic.
constexpr int64_t kWoAmxBf16Off = INT64_MAX;
int64_t wo_amx_bf16_min_rows();
void set_wo_amx_bf16_min_rows(int64_t v);
// Rows from which a weight-only panel entry of ISA `isa` may be selected (0 but for the AMX-BF16 ones).
int64_t wo_panel_kernel_min_rows(uint32_t isa);

// The threaded drivers: x is M x K fp32 with row stride ldx (the callers stage bf16 / column factors).
void wo_panel_q8(Q8WoPanelFn fn, int mr, int nr, const Q8View& w, const float* x, int64_t m, int64_t ldx,
                 const float* bias, float* y, int64_t ldy, int nthreads, const ActInfo* ak, int act);
void wo_panel_q4(Q4WoPanelFn fn, int mr, int nr, const Q4View& w, const float* x, int64_t m, int64_t ldx,
                 const float* bias, float* y, int64_t ldy, int nthreads);

// The portable kernels (ref.cc), always built; the ISA ones are declared by the kernels.inc expansions.
void qgemm_q8_f32_4x16__portable(const Q8View& w, const WoPanelTask& t);
void qgemm_q4_f32_4x16__portable(const Q4View& w, const WoPanelTask& t);
// Test-only: the AMX-BF16 kernels' emulated twins (amx_emu.cc: amx_bf16.h over the portable tile emulation),
// listed in the emulated tables of qgemm / q4gemm, forced by name, never selected.
void qgemm_q8_f32_32x32__amxemu(const Q8View& w, const WoPanelTask& t);
void qgemm_q4_f32_32x32__amxemu(const Q4View& w, const WoPanelTask& t);

}  // namespace slimnn
