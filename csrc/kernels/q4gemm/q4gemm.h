// q4gemm: 4-bit-weight matrix multiplication, y = x W^T (+ bias), W in the q4 format (formats/q4.h).
//
// These are the qgemm family's q4 kernels (symbols qgemm_q4_*), kept in their own folder with their own
// table so the q8 list stays untouched. Two kinds share the q4 layout:
//  - dyn (W4A8): activations quantized per row to uint8 with a zero point (the q8 path's
//    quantize_row_u8__<isa>, same rounding), integer dot products of u8 activations with the unsigned
//    codes, and per group g the exact int32
//        E_g[m][n] = sum_{k in g} a[m][k] * (u[n][k] - z_g[n]) = dot_g(a, u) - z_g[n] * asum_g[m]
//    (asum_g[m] = sum_{k in g} a[m][k], computed by the driver; z = 8 when symmetric). Then
//        y[m][n] = a_scale[m] * (sum_g scale_g[n] * E_g[m][n] - zp[m] * comp[n]) + bias[n].
//    With one group (per channel) the zero-point term is subtracted in int32 (E - zp * colsum), so the
//    integer part is exact up to the single final float product, as in q8.
//  - wo (weight-only): fp32 activations, codes minus zero point widened to fp32 in registers,
//    y[m][n] = sum_g scale_g[n] * sum_{k in g} x[m][k] * (u[n][k] - z_g[n]) + bias[n].
//
// A micro-kernel computes `mr` (<= its MR) rows by `panels` (<= its NP) panels of 16 columns over all of
// K. Activation rows hold kp values (zeros past k) and kernels read exactly kp bytes/floats per row; a
// panel is 8 * kp bytes. Scales are read in the blob's dtype (fp32, fp16 or bf16).
#pragma once
#include <cstdint>

#include "formats/q4.h"

namespace slimnn {

struct Q4Epilogue {
  const void* scales;     // [panels][n_groups][16] in scale_dtype, from the block's first panel
  ScaleDtype scale_dtype;
  const uint8_t* zeros;   // [panels][n_groups][16] likewise, or null (symmetric: 8)
  const int32_t* colsum;  // [np] offset likewise (per channel only)
  const float* comp;      // [np] offset likewise
  int64_t np;             // columns of the whole matrix (row stride of the dot hook's output)
  int64_t group_k8;       // group size in steps of 8 along K
  int64_t n_groups;
  const float* a_scale;   // [mr] (dyn only)
  const int32_t* a_zp;    // [mr] (dyn only)
  const int32_t* a_sum;   // [mr][n_groups] (dyn only): sum of the group's quantized activations
  const float* bias;      // offset to the block's first column, or nullptr
  // Float zero points (zero mode 2), only for a kernel whose Q4KernelInfo::fz_fused is set (null otherwise):
  // the kernel then adds sum_g s_g (8 - z_g) * xsum[m][g] itself, o = s (8 - z) computed in fp32 as packing
  // derives the blob's offsets (so the same bits as the driver's offset pass, at 2 bytes per group and column
  // less streamed with fp16 scales).
  const void* fzeros;     // [panels][n_groups][16] in scale_dtype, from the block's first panel
  const float* xsum;      // [mr][n_groups]: float sums of each group of the (unquantized) activations
  float* y;               // first row, first column of the block
  int64_t ldy;
  int64_t ncols;          // valid columns in the block (<= panels * 16); the rest are not written
};

// a: mr rows of kp uint8, stride lda. w: first panel; panel p starts at w + p * 8 * kp.
using Q4DynUkernel = void (*)(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                              const Q4Epilogue& e);
// x: mr rows of kp fp32, stride ldx (zero from k to kp).
using Q4WoUkernel = void (*)(int mr, int panels, const float* x, int64_t ldx, const uint8_t* w, int64_t kp,
                             const Q4Epilogue& e);
// Test hook: the exact per-group integers E_g of the dyn kernel (zero point of the weights removed, that
// of the activations not), out[m * ldo + g * np_out + c] for c < panels * 16, np_out = e.np.
using Q4DotUkernel = void (*)(int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,
                              const Q4Epilogue& e, int32_t* out, int64_t ldo);
// Same contract as qgemm's QuantizeRowU8 (the q8 path's functions are reused as they are).
using Q4QuantizeRowU8 = bool (*)(const float* x, int64_t k, int64_t kp, uint8_t* q, float* scale, int32_t* zp);

enum class Q4KernelKind : int {
  kQ4Dyn = 0,  // W4A8: u8 activations x 4-bit codes, integer dot products
  kQ4Wo = 1,   // W4 weight-only: fp32 activations
  kQ4WoPanel = 2,  // W4 weight-only from wo_panel_min_rows() rows on (kernels/wogemm; fn is a Q4WoPanelFn)
};

struct Q4KernelInfo {
  Q4KernelKind kind;
  uint32_t isa;  // single ISA bit
  const char* name;
  int mr, np;    // rows and 16-column panels per call
  bool gemv;     // preferred for M == 1
  void* fn;      // Q4DynUkernel or Q4WoUkernel
  Q4DotUkernel dot;           // dyn only
  Q4QuantizeRowU8 quantize;   // dyn only
  bool fz_fused;              // dyn only: adds the float-zero offset term itself (Q4Epilogue::fzeros)
};

// All q4 kernels of the build, best first, from kernels.inc.
const Q4KernelInfo* q4_kernel_table(int* count);
// Test-only kernels (portable emulations of ISA kernels, e.g. the AMX one): forced by name, never selected.
const Q4KernelInfo* q4_emulated_kernel_table(int* count);
// Rows from which q4_select_kernel may pick k (the AMX crossover; 0 for the others).
int64_t q4_kernel_min_rows(const Q4KernelInfo& k);
// First entry of `kind` whose ISA is in `isa_mask` (preferring a GEMV entry of that ISA when m == 1).
// Never null: the portable kernels are always built.
const Q4KernelInfo* q4_select_kernel(Q4KernelKind kind, int64_t m, uint32_t isa_mask);

// The threaded op. x: M x K, row stride ldx, fp32 or bf16 bits (x_bf16). in_mul: null or K fp32 factors
// applied to x's columns before anything else (an activation-aware scaling folded into the layer).
// y: M x N fp32, row stride ldy. bias may be null. Rows holding a NaN/inf give NaN rows (dyn). Returns the
// kernel used.
const Q4KernelInfo* q4_linear(Q4KernelKind kind, const void* x, bool x_bf16, int64_t m, int64_t ldx,
                              const float* in_mul, const Q4View& w, const float* bias, float* y, int64_t ldy,
                              int nthreads, uint32_t isa_mask);
// The same with the micro-kernel given (tests force one by name, emulated ones included); its kind decides
// dyn or weight-only. isa_mask chooses the float-zero offset helpers (the best vector ISA in it), as in
// q4_linear: an emulated twin run with the CPU's mask gets the helpers its real kernel would.
void q4_linear_with(const Q4KernelInfo* ki, const void* x, bool x_bf16, int64_t m, int64_t ldx, const float* in_mul,
                    const Q4View& w, const float* bias, float* y, int64_t ldy, int nthreads, uint32_t isa_mask);

// Float zero points (zero mode 2), per ISA (fz_term.h; portable ones in q4gemm.cc): the float group sums of
// one row (out[g] = sum of x[k], k in group g and k < k_end) and the offset term of one 16-column panel,
// y[r][c] += sum_g off[g][c] * xsum[r][g] for r < m, c < nc (off: the panel's [n_groups][16] fp32 offsets).
using Q4FzGroupSums = void (*)(const float* x, int64_t k_end, int64_t gs, int64_t ng, float* out);
using Q4FzOffsetPanel = void (*)(const float* off, int64_t ng, const float* xsum, int64_t m, float* y,
                                 int64_t ldy, int nc);
#define SLIMNN_Q4_FZ_DECL(isa)                                                                  \
  void q4_fz_group_sums__##isa(const float*, int64_t, int64_t, int64_t, float*);              \
  void q4_fz_offset_panel__##isa(const float*, int64_t, const float*, int64_t, float*, int64_t, int);
SLIMNN_Q4_FZ_DECL(portable)
SLIMNN_Q4_FZ_DECL(avx2)
SLIMNN_Q4_FZ_DECL(avx512)
SLIMNN_Q4_FZ_DECL(neon)
#undef SLIMNN_Q4_FZ_DECL
// Defines one ISA's two entries over its namespace ns holding fz_term.h.
#define SLIMNN_Q4_FZ_ENTRIES(isa, ns)                                                                       \
  void q4_fz_group_sums__##isa(const float* x, int64_t k, int64_t gs, int64_t ng, float* out) {            \
    ns::fz_group_sums(x, k, gs, ng, out);                                                                    \
  }                                                                                                          \
  void q4_fz_offset_panel__##isa(const float* off, int64_t ng, const float* xsum, int64_t m, float* y,      \
                                 int64_t ldy, int nc) {                                                      \
    ns::fz_offset_panel(off, ng, xsum, m, y, ldy, nc);                                                       \
  }

// Test hook: E_g of one kernel for given quantized activations a (m x kp, stride lda); out [m][n_groups][np].
void q4_dot_i32(const Q4KernelInfo* kernel, const uint8_t* a, int64_t m, int64_t lda, const Q4View& w, int32_t* out);

}  // namespace slimnn
