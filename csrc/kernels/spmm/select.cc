#include "common/isa.h"
#include "kernels/spmm/spmm.h"

namespace slimnn {

#define SLIMNN_SPMM_KERNEL(kind, isa_bit, isa_word, name, mt, gemv, xpad) \
  void name(const SparseView&, int64_t, int64_t, const float*, float*);
#include "kernels/spmm/kernels.inc"
#undef SLIMNN_SPMM_KERNEL

namespace {
const SpmmKernelInfo kTable[] = {
#define SLIMNN_SPMM_KERNEL(kind, isa_bit, isa_word, name, mt, gemv, xpad) \
  {SpmmKind::kind, isa_bit, #name, mt, gemv, xpad, &name},
#include "kernels/spmm/kernels.inc"
#undef SLIMNN_SPMM_KERNEL
};
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);
}  // namespace

const SpmmKernelInfo* spmm_kernel_table(int* count) {
  *count = kTableSize;
  return kTable;
}

const SpmmKernelInfo* select_spmm(SpmmKind kind, int64_t m, uint32_t isa_mask) {
  const SpmmKernelInfo* first = nullptr;
  for (const SpmmKernelInfo& k : kTable) {
    if (k.kind != kind || (k.isa & isa_mask) == 0) continue;
    if (first == nullptr) first = &k;
    if (first->isa != k.isa) break;  // only kernels of the best available ISA compete
    if (k.gemv == (m == 1)) return &k;
  }
  return first;
}

SpmmKind spmm_kind(const SparseView& v) {
  const int i8 = v.values_type == SparseValues::kI8 ? 1 : 0;
  switch (v.format) {
    case FormatId::kSparseCsr: return static_cast<SpmmKind>(0 + i8);
    case FormatId::kBsr: return static_cast<SpmmKind>(2 + i8);
    default: return static_cast<SpmmKind>(4 + i8);
  }
}

const char* spmm_kind_name(SpmmKind k) {
  static const char* const kNames[] = {"csr_f32", "csr_i8", "bsr_f32", "bsr_i8", "nm_f32", "nm_i8"};
  return kNames[static_cast<int>(k)];
}

}  // namespace slimnn
