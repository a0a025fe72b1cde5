#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/act/act.h"

namespace slimnn {

#define SLIMNN_ACT_KERNEL(isa_bit, isa_word, name) void name(int act, float* y, int64_t n);
#include "kernels/act/kernels.inc"
#undef SLIMNN_ACT_KERNEL

namespace {
const ActInfo kTable[] = {
#define SLIMNN_ACT_KERNEL(isa_bit, isa_word, name) {isa_bit, #name, &name},
#include "kernels/act/kernels.inc"
#undef SLIMNN_ACT_KERNEL
};
}  // namespace

const ActInfo* act_table(int* count) { return table_out(kTable, count); }

const ActInfo* select_act(uint32_t isa_mask) { return select_first(kTable, isa_mask); }

const ActInfo* act_kernel_by_name(const char* name) { return find_kernel(kTable, name); }

}  // namespace slimnn
