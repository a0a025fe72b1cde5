#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {

#define SLIMNN_DECL_kQ8Dyn(isa_word, name)                                                                  \
  void name(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, const Q8Epilogue&);                 \
  void name##_dot(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t);           \
  bool quantize_row_u8__##isa_word(const float*, int64_t, int64_t, uint8_t*, float*, int32_t*);
#define SLIMNN_DECL_kQ8Wo(isa_word, name) \
  void name(int, int, const float*, int64_t, const int8_t*, int64_t, const Q8Epilogue&);
#define SLIMNN_DECL_kQ8WoPanel(isa_word, name) void name(const Q8View&, const WoPanelTask&);
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) SLIMNN_DECL_##kind(isa_word, name)
#include "kernels/qgemm/kernels.inc"
#undef SLIMNN_KERNEL

#define SLIMNN_DOT_kQ8Dyn(isa_word, name) &name##_dot, &quantize_row_u8__##isa_word
#define SLIMNN_DOT_kQ8Wo(isa_word, name) nullptr, nullptr
#define SLIMNN_DOT_kQ8WoPanel(isa_word, name) nullptr, nullptr

namespace {
const KernelInfo kTable[] = {
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) \
  {KernelKind::kind, isa_bit, #name, mr, np, gemv, reinterpret_cast<void*>(&name), SLIMNN_DOT_##kind(isa_word, name)},
#include "kernels/qgemm/kernels.inc"
#undef SLIMNN_KERNEL
};
}  // namespace

const KernelInfo* kernel_table(int* count) { return table_out(kTable, count); }

const KernelInfo* select_kernel(KernelKind kind, int64_t m, uint32_t isa_mask) {
  return select_for_rows(kTable, m, isa_mask, [kind](const KernelInfo& k) { return k.kind == kind; });
}

const KernelInfo* select_linear_kernel(KernelKind kind, int64_t m, uint32_t isa_mask) {
  if (kind == KernelKind::kQ8Wo && m >= wo_panel_min_rows(false)) kind = KernelKind::kQ8WoPanel;
  return select_kernel(kind, m, isa_mask);
}

}  // namespace slimnn
