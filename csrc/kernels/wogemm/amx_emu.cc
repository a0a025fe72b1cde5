// The AMX-BF16 weight-only kernels' emulated twins, qgemm_q8_f32_32x32__amxemu / qgemm_q4_f32_32x32__amxemu:
// amx_bf16.h compiled over the portable tile emulation (common/simd/x86_amx.h with SLIMNN_AMX_EMULATE), no
// ISA flags. Test-only: listed in the emulated tables of qgemm / q4gemm (select.cc), never selected; tests
// force them by name to check the bf16 packing, tails, threading and epilogues on any CPU. Slow (scalar tiles).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels/act/act.h"
#include "kernels/wogemm/wogemm.h"

#define SLIMNN_AMX_EMULATE 1

namespace slimnn {
namespace amxemu_wo {
namespace {

#include "common/simd/x86_amx.h"
#include "kernels/wogemm/amx_bf16.h"

}  // namespace
}  // namespace amxemu_wo

void qgemm_q8_f32_32x32__amxemu(const Q8View& w, const WoPanelTask& t) {
  amxemu_wo::run_task(w, t, amxemu_wo::dequant_q8);
}
void qgemm_q4_f32_32x32__amxemu(const Q4View& w, const WoPanelTask& t) {
  amxemu_wo::run_task(w, t, amxemu_wo::dequant_q4);
}

}  // namespace slimnn
