#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/lowrank/lowrank.h"

namespace slimnn {

#define SLIMNN_LR_KERNEL(isa_bit, isa_word, name, mr, nr, gemv) \
  void name(int, int, int64_t, const float*, int64_t, const float*, int64_t, const float*, float*, int64_t);
#include "kernels/lowrank/kernels.inc"
#undef SLIMNN_LR_KERNEL

namespace {
const LrKernelInfo kTable[] = {
#define SLIMNN_LR_KERNEL(isa_bit, isa_word, name, mr, nr, gemv) {isa_bit, #name, mr, nr, gemv, &name},
#include "kernels/lowrank/kernels.inc"
#undef SLIMNN_LR_KERNEL
};
}  // namespace

const LrKernelInfo* lowrank_kernel_table(int* count) { return table_out(kTable, count); }

const LrKernelInfo* select_lowrank_kernel(int64_t m, uint32_t isa_mask) { return select_for_rows(kTable, m, isa_mask); }

const LrKernelInfo* lowrank_kernel_by_name(const char* name) { return find_kernel(kTable, name); }

}  // namespace slimnn
