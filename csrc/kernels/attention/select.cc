#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/attention/attention.h"

namespace slimnn {

#define SLIMNN_ATTN_KERNEL(isa_bit, isa_word, name, exp_name, width) \
  void name(const AttnTile&);                                         \
  void exp_name(const float*, float*, int64_t);
#include "kernels/attention/kernels.inc"
#undef SLIMNN_ATTN_KERNEL

namespace {
const AttnKernelInfo kTable[] = {
#define SLIMNN_ATTN_KERNEL(isa_bit, isa_word, name, exp_name, width) {isa_bit, #name, width, &name, &exp_name},
#include "kernels/attention/kernels.inc"
#undef SLIMNN_ATTN_KERNEL
};
}  // namespace

const AttnKernelInfo* attention_kernel_table(int* count) { return table_out(kTable, count); }

const AttnKernelInfo* select_attention_kernel(uint32_t isa_mask) { return select_first(kTable, isa_mask); }

const AttnKernelInfo* attention_kernel_by_name(const char* name) { return find_kernel(kTable, name); }

}  // namespace slimnn
