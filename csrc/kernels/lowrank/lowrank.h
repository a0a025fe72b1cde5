// lowrank: factorized linear layers, y = (x V^T) U^T + b (+ x S^T), with the rank-r intermediate kept in cache.
//
// W (N x K) ~ U (N x r) V (r x K). Two separate matmuls pay for the intermediate t = x V^T twice (written to
// memory, read back) and start a parallel region twice; here one op computes both products inside ONE
// parallel region: phase 1 fills t (M x r, small: it stays in L1/L2) by blocks of V's rows, phase 2 computes
// y by blocks of U's rows from t. No barrier object is needed: every worker first helps drain the phase it
// finds unfinished, then waits only for chunks another live worker is running (see run_phases in lowrank.cc).
//
// Factors:
//  - fp32: U and V are plain row-major float matrices in nn.Linear layout (U is the weight of a r -> N Linear,
//    V of a K -> r Linear). No packed copy: the micro-kernels read rows of the weight directly (dot-product
//    form, horizontal sums folded once per output), so a module keeps exactly (N + K) * r floats.
//  - int8: U and V are q8 blobs (formats/q8.h) multiplied by the qgemm micro-kernels (kernels/qgemm), the two
//    GEMMs (and the activation quantization of x and of t for W8A8) again in one region.
// Residual (the accuracy form W ~ U V + S): an optional sparse S in CSR over output rows is added in phase 2,
// per block of outputs, while the block is still in cache. It composes with both factor types.
#pragma once
#include <cstdint>

#include "formats/q8.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {

// Micro-kernel (dot-product form):
//   y[i * ldy + j] = sum_{c < k} x[i * ldx + c] * w[j * ldw + c]  (+ bias[j] when bias != nullptr)
// for i < mr <= MR and j < nr <= NR. x and w are row-major fp32; exactly k floats are read from each row
// (tails are masked: no over-read), k >= 0 (k == 0 writes the bias or zeros). Accumulation order: lanes of a
// vector hold partial sums over c congruent mod the vector width, folded at the end (so results differ from a
// sequential sum by rounding only).
using LrF32Ukernel = void (*)(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                              const float* bias, float* y, int64_t ldy);

struct LrKernelInfo {
  uint32_t isa;      // single ISA bit
  const char* name;  // lowrank_f32_<MR>x<NR>__<isa>
  int mr, nr;        // rows of x and rows of w (outputs) per call
  bool gemv;         // preferred when M == 1
  LrF32Ukernel fn;
};

// All fp32 micro-kernels of the build, best first (kernels.inc).
const LrKernelInfo* lowrank_kernel_table(int* count);
// First kernel whose ISA is in the mask, among the best available ISA's, preferring gemv iff m == 1.
const LrKernelInfo* select_lowrank_kernel(int64_t m, uint32_t isa_mask);
// The kernel named `name`, or nullptr.
const LrKernelInfo* lowrank_kernel_by_name(const char* name);

// Sparse residual S (N x K) in CSR over output rows: row n holds val[j] at column col[j] for
// rowptr[n] <= j < rowptr[n + 1]. Validated by lowrank_check_csr before use.
struct CsrResidual {
  int64_t n, k, nnz;
  const int64_t* rowptr;  // [n + 1], rowptr[0] == 0, non-decreasing, rowptr[n] == nnz
  const int32_t* col;     // [nnz], each in [0, k)
  const float* val;       // [nnz], finite
};
// Throws FormatError (ValueError in Python) naming the first problem (O(n + nnz)).
void lowrank_check_csr(const CsrResidual& s);

struct LowRankF32 {
  int64_t n, k, r;  // r >= 1
  const float* u;   // [n][r]
  const float* v;   // [r][k]
};

// y (M x N, row stride ldy) = (x V^T) U^T + bias (+ x S^T) with fp32 factors. x: M x K fp32, row stride ldx.
// bias and residual may be null. `kernel` null: select_lowrank_kernel(m, isa_mask). Returns the kernel used.
const LrKernelInfo* lowrank_f32_linear(const float* x, int64_t m, int64_t ldx, const LowRankF32& w,
                                       const float* bias, const CsrResidual* residual, float* y, int64_t ldy,
                                       int nthreads, uint32_t isa_mask, const LrKernelInfo* kernel = nullptr);

// The same with int8 factors: v is a q8 blob of an r x K matrix, u of an N x r one (u.k == v.n).
// kind kQ8Dyn: x and t are quantized per row to u8 (W8A8, as qgemm's dynamic op); kQ8Wo: weight-only, fp32
// activations. Rows of x holding a NaN or infinity give NaN rows (both kinds). Returns the qgemm kernel used.
const KernelInfo* lowrank_q8_linear(KernelKind kind, const float* x, int64_t m, int64_t ldx, const Q8View& v,
                                    const Q8View& u, const float* bias, const CsrResidual* residual, float* y,
                                    int64_t ldy, int nthreads, uint32_t isa_mask);

}  // namespace slimnn
