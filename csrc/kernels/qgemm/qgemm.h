// qgemm: int8-weight matrix multiplication, y = x W^T (+ bias), W in the q8 format (formats/q8.h).
//
// Two families of micro-kernels share the q8 layout:
//  - dyn (W8A8): activations quantized per row to uint8 with a zero point (asymmetric), integer dot
//    products u8 x s8 -> int32, then y[m][n] = a_scale[m] * sum_g scale[g][n] * (dot_g - zp[m] * colsum[g][n])
//    + bias[n]. For per-channel weights (one group) the subtraction is done in int32, so the integer part
//    is exact; for several groups the zero-point term is applied in float through comp[n].
//  - wo (weight-only): fp32 activations, int8 weights converted to fp32 in registers,
//    y[m][n] = sum_g scale[g][n] * sum_{k in g} x[m][k] * w[n][k] + bias[n].
//
// A micro-kernel computes `mr` (<= its MR) rows by `panels` (<= its NP) panels of 16 columns over the whole
// of K. Activation rows are padded to kp (zeros for wo; any value for dyn, padded weights are zero) and
// 64-byte readable past kp is NOT required: kernels read exactly kp bytes/floats per row.
#pragma once
#include <cstdint>

#include "formats/q8.h"

namespace slimnn {

struct Q8Epilogue {
  const float* scales;   // [n_groups][np], already offset to the first column of the block
  const int32_t* colsum; // [n_groups][np], offset likewise
  const float* comp;     // [np], offset likewise
  int64_t np;            // stride between groups in scales/colsum
  int64_t group_k4;      // group size in steps of 4 along K
  int64_t n_groups;
  const float* a_scale;  // [mr] (dyn only)
  const int32_t* a_zp;   // [mr] (dyn only)
  const float* bias;     // offset to the block's first column, or nullptr
  float* y;              // first row, first column of the block
  int64_t ldy;
  int64_t ncols;         // valid columns in the block (<= panels * 16); the rest are not written
};

// a: mr rows of kp uint8, stride lda. w: first panel; panel p starts at w + p * 16 * kp.
using Q8DynUkernel = void (*)(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                              const Q8Epilogue& e);
// x: mr rows of kp fp32, stride ldx (zero padded from k to kp).
using Q8WoUkernel = void (*)(int mr, int panels, const float* x, int64_t ldx, const int8_t* w, int64_t kp,
                             const Q8Epilogue& e);
// Test hook: raw int32 dot products over all of kp, out[m][c] for c < panels * 16.
using Q8DotUkernel = void (*)(int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp,
                              int32_t* out, int64_t ldo);
// Quantizes one row of k floats to uint8 (q has room for kp bytes; [k, kp) set to 0).
// Returns false (and leaves q undefined) if the row holds a NaN or an infinity.
// Rounding: nearest, ties to even (the default MXCSR/fenv mode). See reference.py for the exact formula.
using QuantizeRowU8 = bool (*)(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

// kQ8WoPanel: the weight-only op at M >= wo_panel_min_rows() (kernels/wogemm: dequantized fp32 panels and an
// fp32 GEMM tile; fn is a Q8WoPanelFn). select_linear_kernel(kQ8Wo, m, ...) returns one of these from that M on.
enum class KernelKind : int { kQ8Dyn = 0, kQ8Wo = 1, kQ8WoPanel = 2 };

struct KernelInfo {
  KernelKind kind;
  uint32_t isa;     // single ISA bit
  const char* name;
  int mr, np;       // rows and 16-column panels per call
  bool gemv;        // preferred for M == 1
  void* fn;         // Q8DynUkernel, Q8WoUkernel or (kQ8WoPanel) Q8WoPanelFn
  Q8DotUkernel dot; // dyn only
  QuantizeRowU8 quantize;  // dyn only
};

// All kernels of the build, best first, from kernels.inc.
const KernelInfo* kernel_table(int* count);
// Test-only kernels, run by name and never selected: the portable emulation of the AMX kernel
// (qgemm_q8_u8_32x64__amxemu, amx_emu.cc). Their `isa` is the ISA they run on (portable).
const KernelInfo* emulated_kernel_table(int* count);
// The fewest rows for which select_kernel may choose entry k (AMX: the crossover, select.cc; others 0).
int64_t kernel_min_rows(const KernelInfo& k);
// First entry of `kind` whose ISA is in `isa_mask` and whose kernel_min_rows is <= m (and that prefers
// GEMV when m == 1, if one does). Never null: the portable kernel is always built.
const KernelInfo* select_kernel(KernelKind kind, int64_t m, uint32_t isa_mask);
// What q8_linear runs: select_kernel, except that kQ8Wo at m >= wo_panel_min_rows(false) gives the best
// kQ8WoPanel entry (kernels/wogemm). Callers that run a kQ8Wo micro-kernel themselves (conv, lowrank) keep
// select_kernel: a panel entry's fn has another signature.
const KernelInfo* select_linear_kernel(KernelKind kind, int64_t m, uint32_t isa_mask);

// Ops (threaded drivers). x is M x K, row stride ldx elements, fp32 (x_bf16 = false) or bf16 bits.
// y is M x N fp32, row stride ldy. bias may be null. `act` (an Activation, kernels/act/act.h) is applied to
// each output block right after its micro-kernel stores it (bias first, then the activation). Returns the
// kernel used. `split` chooses how the dynamic driver divides the work: kSplitAuto (the heuristic in
// qgemm.cc), kSplitColumns (quantize all rows, then tasks over column x row blocks) or kSplitRows (each task
// quantizes a block of rows and computes all its columns); the results are the same bits either way.
enum : int { kSplitAuto = 0, kSplitColumns = 1, kSplitRows = 2 };
const KernelInfo* q8_linear(KernelKind kind, const void* x, bool x_bf16, int64_t m, int64_t ldx, const Q8View& w,
                            const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask, int act = 0,
                            int split = kSplitAuto);
// The same with the micro-kernel given (tests force one by name, emulated ones included); `isa_mask` then
// only selects the activation kernel. The caller checks that this CPU runs ki.
void q8_linear_with(const KernelInfo* ki, const void* x, bool x_bf16, int64_t m, int64_t ldx, const Q8View& w,
                    const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask, int act, int split);

// The dynamic op over activations the caller quantized with the kernels' formula (reference.py; what
// torch.compile emits so that Inductor fuses the quantization into the op producing x): a is m rows of kp
// uint8 codes (row stride kp, [k, kp) zero), a_scale / a_zp one per row. A row with a_scale[r] <= 0 (or NaN)
// counts as refused (NaN, infinity or overflow-sized values) and is computed in float32 from x (fp32, stride
// ldx), as q8_linear does. Same bits as q8_linear(kQ8Dyn) on x whenever the codes are the kernel's own.
const KernelInfo* q8_linear_prequantized(const uint8_t* a, const float* a_scale, const int32_t* a_zp, const float* x,
                                         int64_t m, int64_t ldx, const Q8View& w, const float* bias, float* y,
                                         int64_t ldy, int nthreads, uint32_t isa_mask, int act);

// Test hook: the quantized activations and the raw int32 dot products of one kernel.
void q8_dot_i32(const KernelInfo* kernel, const uint8_t* a, int64_t m, int64_t lda, const Q8View& w, int32_t* out);

}  // namespace slimnn
