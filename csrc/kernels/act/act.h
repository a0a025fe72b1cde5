// act: elementwise activations applied in place to fp32 rows, used as the fused epilogue of the GEMM
// drivers (run on each output block right after the micro-kernel stores it, while it is still in L1).
//
// Every path (portable, AVX2, AVX-512) evaluates the same formulas with the same operations in the same
// order (fused multiply-adds included, round-to-nearest-even range reduction, IEEE division), so the
// results are bit-identical across ISAs and, being elementwise, across thread counts.
//
//   relu(x)      = max(x, 0)                         (NaN stays NaN)
//   gelu(x)      = x * Phi(x) = x/2 * erfc(-x/sqrt2)  (exact erf form, torch's default F.gelu)
//                  erfc(z) = exp(-z^2) * t * Q(t), t = 1 / (1 + 0.4 z), z = |x|/sqrt2 >= 0, Q of degree 9
//                  (fitted to erfcx = exp(z^2) erfc(z) on [0, 10.5], relative error 9.3e-9); z^2 = x^2/2 is
//                  carried as hi + lo (fma) so exp(-z^2) does not lose z^2 * eps in the tail;
//                  x >= 0: x * (1 - erfc/2), x < 0: x * erfc/2 (no cancellation on either side); erfc/2 comes
//                  from Q/2 directly (halving the coefficients is exact).
//   gelu_tanh(x) = x/2 * (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3), evaluated as x * sigmoid(2u).
//   silu(x)      = x * sigmoid(x).
//   sigmoid(w)   = 1/(1+e) for w >= 0, e/(1+e) for w < 0, with e = exp(-|w|) (no cancellation, no overflow).
//   exp(v), v <= 0: v = n ln2 + r (Cody-Waite, two-part ln2), exp(r) = 1 + r + r^2 P(r) with P of degree 4
//                  (relative error 3.2e-9 on |r| <= ln2/2), times 2^n built in the exponent bits. Arguments
//                  below -87 (results under ~1.6e-38) give 0: outputs smaller than ~1e-36 in magnitude are
//                  flushed to zero instead of being returned as denormals.
// Measured maximum errors against float64 math on float32 inputs: see docs/fusion.md and tests/test_fuse.py.
#pragma once
#include <cstdint>

namespace slimnn {

// The activations a GEMM epilogue can apply. The integer values cross the Python boundary: keep them.
enum class Activation : int {
  kNone = 0,      // identity
  kRelu = 1,      // max(x, 0)
  kGelu = 2,      // exact (erf) GELU, torch.nn.functional.gelu(approximate="none")
  kGeluTanh = 3,  // tanh-approximated GELU, approximate="tanh"
  kSilu = 4,      // x * sigmoid(x), a.k.a. swish
};
constexpr int kNumActivations = 5;

// Applies `act` in place to y[0..n). Any n >= 0; reads and writes exactly n floats.
using ActUkernel = void (*)(int act, float* y, int64_t n);

struct ActInfo {
  uint32_t isa;  // single ISA bit
  const char* name;
  ActUkernel fn;
};

// All activation kernels of the build, best first (kernels.inc).
const ActInfo* act_table(int* count);
// First entry whose ISA is in `isa_mask`; never null (the portable kernel is always built).
const ActInfo* select_act(uint32_t isa_mask);
// The kernel named `name`, or nullptr.
const ActInfo* act_kernel_by_name(const char* name);
// Applies `act` to `rows` rows of `cols` floats (row stride ldy) with the selected kernel. Not threaded:
// drivers call it per output block from inside their own tasks.
inline void apply_activation(const ActInfo* k, int act, float* y, int64_t rows, int64_t cols, int64_t ldy) {
  if (act == 0) return;
  for (int64_t r = 0; r < rows; ++r) k->fn(act, y + r * ldy, cols);
}

}  // namespace slimnn
