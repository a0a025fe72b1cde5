#include "common/isa.h"
#include "common/kernel_table.h"
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
}  // namespace

const SpmmKernelInfo* spmm_kernel_table(int* count) { return table_out(kTable, count); }

const SpmmKernelInfo* select_spmm(SpmmKind kind, int64_t m, uint32_t isa_mask) {
  return select_for_rows(kTable, m, isa_mask, [kind](const SpmmKernelInfo& k) { return k.kind == kind; });
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
