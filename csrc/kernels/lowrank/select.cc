#include <cstring>

#include "common/isa.h"
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
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);
}  // namespace

const LrKernelInfo* lowrank_kernel_table(int* count) {
  *count = kTableSize;
  return kTable;
}

const LrKernelInfo* select_lowrank_kernel(int64_t m, uint32_t isa_mask) {
  const LrKernelInfo* first = nullptr;
  for (const LrKernelInfo& k : kTable) {
    if ((k.isa & isa_mask) == 0) continue;
    if (first == nullptr) first = &k;
    if (first->isa != k.isa) break;  // only kernels of the best available ISA compete
    if (k.gemv == (m == 1)) return &k;
  }
  return first;
}

const LrKernelInfo* lowrank_kernel_by_name(const char* name) {
  for (const LrKernelInfo& k : kTable)
    if (std::strcmp(k.name, name) == 0) return &k;
  return nullptr;
}

}  // namespace slimnn
