// AVX-512 F: the fp32 dot-product micro-kernels of the lowrank family (x86_dot.h) on 16 lanes (both phases).
// The tail (k % 16) uses masked loads: nothing past k is read.
#include <immintrin.h>

#include "kernels/lowrank/lowrank.h"

namespace slimnn {
namespace avx512 {
namespace {
#include "common/simd/x86_avx512.h"
#include "kernels/lowrank/x86_dot.h"
}  // namespace
}  // namespace avx512

#define SLIMNN_LR_ISA avx512
#define SLIMNN_LR_IF_avx512(name, gemv) SLIMNN_LR_DEFINE(name, gemv)
#include "kernels/lowrank/x86_entries.h"
#undef SLIMNN_LR_ISA

}  // namespace slimnn
