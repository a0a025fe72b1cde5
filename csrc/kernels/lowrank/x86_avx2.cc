// AVX2 + FMA: the fp32 dot-product micro-kernels of the lowrank family (x86_dot.h) on 8 lanes. The tail
// (k % 8) uses vmaskmovps, which reads nothing past k (masked lanes neither load nor fault).
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx2 {
namespace {
#include "common/simd/x86_avx2.h"
#include "kernels/lowrank/x86_dot.h"
}  // namespace
}  // namespace avx2

#define SLIMNN_LR_ISA avx2
#define SLIMNN_LR_IF_avx2(name, gemv) SLIMNN_LR_DEFINE(name, gemv)
#include "kernels/lowrank/x86_entries.h"
#undef SLIMNN_LR_ISA

}  // namespace slimnn
