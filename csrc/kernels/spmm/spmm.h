// spmm: sparse weights times dense activations, y = x W^T (+ bias), with W in one of the sparse formats of
// formats/sparse.h (csr, bsr, nm; fp32 values or int8 values with a per-row scale). Activations and outputs
// are fp32: int8 values are widened in registers (weight-only style), because the kernels are bound by the
// loads of x[k] that each nonzero needs, which quantized activations would not remove.
//
// A micro-kernel computes the units [u0, u1) (csr: slices of 8 rows; bsr: block rows; nm: rows) for MT rows
// of activations at once, MT being the kernel's `mt` (1 for the GEMV kernels):
//   yt[n][t] = s[n] * sum_k W[n][k] * xt[k][t]     for t < MT and every row n of the units,
// s[n] the row's scale (1 for fp32 values). Sums run in fp32, in the order the kernel chooses.
//   xt: [kx][MT] fp32, the activations transposed (for MT = 1 simply x), zero from row K up to kx:
//       csr: kx = K + xpad_slots * max_delta (a lane's column may run that far past K between clamps);
//       bsr: kx = kb * C;   nm: kx = kc * 16.
//   yt: [N][MT], original row order; only the units' rows are written; no bias.
// Kernels clamp decoded column indices into [0, kx) and skip row ids outside [0, N): a corrupt blob gives
// wrong numbers, never an access out of bounds. They read exactly the sections the view describes.
#pragma once
#include <cstdint>

#include "formats/sparse.h"

namespace slimnn {

enum class SpmmKind : int { kCsrF32 = 0, kCsrI8 = 1, kBsrF32 = 2, kBsrI8 = 3, kNmF32 = 4, kNmI8 = 5 };
// The kind's storage: int8 values (odd kinds) or fp32, and its format.
constexpr bool spmm_kind_i8(SpmmKind k) { return static_cast<int>(k) % 2 == 1; }
constexpr bool spmm_kind_csr(SpmmKind k) { return k == SpmmKind::kCsrF32 || k == SpmmKind::kCsrI8; }
constexpr bool spmm_kind_bsr(SpmmKind k) { return k == SpmmKind::kBsrF32 || k == SpmmKind::kBsrI8; }

using SpmmUkernel = void (*)(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt);

struct SpmmKernelInfo {
  SpmmKind kind;
  uint32_t isa;     // single ISA bit
  const char* name;
  int mt;           // activation rows per call
  bool gemv;        // preferred for M == 1
  int xpad_slots;   // csr: slots between column clamps (the driver pads xt by xpad_slots * max_delta rows)
  SpmmUkernel fn;
};

// Every kernel of the build, best first within each kind, from kernels.inc.
const SpmmKernelInfo* spmm_kernel_table(int* count);
// First kernel of `kind` whose ISA is in `isa_mask`; among those of the best ISA, the GEMV one when m == 1.
// Never null: the portable kernels are always built.
const SpmmKernelInfo* select_spmm(SpmmKind kind, int64_t m, uint32_t isa_mask);
SpmmKind spmm_kind(const SparseView& v);
const char* spmm_kind_name(SpmmKind k);

// The op (threaded driver): x is M x K fp32 with row stride ldx, y is M x N fp32 with row stride ldy, bias
// [N] or null. A row of x holding a NaN or an infinity gives a NaN row of y. `forced` (tests) runs that
// kernel instead of the selected one. Returns the kernel used.
const SpmmKernelInfo* sparse_linear(const SparseView& w, const float* x, int64_t m, int64_t ldx, const float* bias,
                                    float* y, int64_t ldy, int nthreads, uint32_t isa_mask,
                                    const SpmmKernelInfo* forced = nullptr);

}  // namespace slimnn
