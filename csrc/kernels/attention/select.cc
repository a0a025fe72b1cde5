#include <cstring>

#include "common/isa.h"
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
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);
}  // namespace

const AttnKernelInfo* attention_kernel_table(int* count) {
  *count = kTableSize;
  return kTable;
}

const AttnKernelInfo* select_attention_kernel(uint32_t isa_mask) {
  for (const AttnKernelInfo& k : kTable)
    if (k.isa & isa_mask) return &k;
  return &kTable[kTableSize - 1];
}

const AttnKernelInfo* attention_kernel_by_name(const char* name) {
  for (const AttnKernelInfo& k : kTable)
    if (std::strcmp(k.name, name) == 0) return &k;
  return nullptr;
}

}  // namespace slimnn
