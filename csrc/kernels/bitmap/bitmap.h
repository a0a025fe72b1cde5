// bitmap spmm: y = x W^T (+ bias) with W in the bitmap format (formats/bitmap.h: int8 values, a 64-bit mask
// per row and 64 columns), W8A8 numerics identical to the dense int8 dynamic path (kernels/qgemm/qgemm.h):
// each row of x is quantized to u8 with a zero point by the qgemm row quantizer, the integer products are
// exact in int32, and
//   y[m][n] = float(dot[m][n] - zp[m] * rowsum[n]) * scale[n] * a_scale[m] + bias[n]
// (int32 arithmetic wrapping, float operations in that order), the same formula and order as the dense
// per-channel dynamic kernels.
//
// A micro-kernel computes the integer dot products of the rows of groups [g0, g1) of W (rows g * G + j,
// j < G, below N) with `mrows` (<= its MT) rows of quantized activations:
//   dots[t * ldd + r] = sum_k xq[t * ldx + k] * W[r][k]     for t < mrows and every such row r
//   xq: u8, each row kc * 64 bytes (any value past K: W is zero there); MT rows must be readable even when
//   mrows < MT (kernels may compute all MT and store only mrows). The kernels clamp their value pointer
//   into the values section (plus its pad), so a corrupt blob gives wrong numbers, never an access out of
//   bounds; they read no other memory than the view's sections and xq.
#pragma once
#include <cstdint>

#include "formats/bitmap.h"

namespace slimnn {

using BitmapUkernel = void (*)(const BitmapView& w, int64_t g0, int64_t g1, const uint8_t* xq, int64_t ldx,
                               int mrows, int32_t* dots, int64_t ldd);

struct BitmapKernelInfo {
  uint32_t isa;     // single ISA bit
  const char* name;
  int mt;           // activation rows per call
  bool gemv;        // preferred for M == 1
  BitmapUkernel fn;
};

// Every kernel of the build, best first, from kernels.inc.
const BitmapKernelInfo* bitmap_kernel_table(int* count);
// Among kernels of the best ISA in `isa_mask`, the GEMV one when m == 1, else the first. Never null.
const BitmapKernelInfo* select_bitmap(int64_t m, uint32_t isa_mask);

// The op (threaded driver): x is M x K fp32 with row stride ldx, y is M x N fp32 with row stride ldy, bias
// [N] or null. A row of x holding a NaN or an infinity gives a NaN row of y (as the dense int8 path).
// `forced` (tests) runs that kernel instead of the selected one. Results are bitwise identical for every
// thread count (each output is computed whole by one task). Returns the kernel used.
const BitmapKernelInfo* bitmap_linear(const BitmapView& w, const float* x, int64_t m, int64_t ldx, const float* bias,
                                      float* y, int64_t ldy, int nthreads, uint32_t isa_mask,
                                      const BitmapKernelInfo* forced = nullptr);

// Test hook: the raw int32 dot products of one kernel, xq [m][kc * 64] u8 -> dots [m][n].
void bitmap_dots(const BitmapKernelInfo* kernel, const BitmapView& w, const uint8_t* xq, int64_t m, int32_t* dots);

}  // namespace slimnn
