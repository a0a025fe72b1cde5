#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/qgemm/quantizers.h"
#include "kernels/wogemm/wogemm.h"

namespace slimnn {

#define SLIMNN_DECL_kQ8Dyn(isa_word, name)                                                                  \
  void name(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, const Q8Epilogue&);                 \
  void name##_dot(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t);
#define SLIMNN_DECL_kQ8Wo(isa_word, name) \
  void name(int, int, const float*, int64_t, const int8_t*, int64_t, const Q8Epilogue&);
#define SLIMNN_DECL_kQ8WoPanel(isa_word, name) void name(const Q8View&, const WoPanelTask&);
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) SLIMNN_DECL_##kind(isa_word, name)
#include "kernels/qgemm/kernels.inc"
#undef SLIMNN_KERNEL

#define SLIMNN_DOT_kQ8Dyn(isa_word, name) &name##_dot, &quantize_row_u8__##isa_word
#define SLIMNN_DOT_kQ8Wo(isa_word, name) nullptr, nullptr
#define SLIMNN_DOT_kQ8WoPanel(isa_word, name) nullptr, nullptr

void qgemm_q8_u8_32x64__amxemu(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, const Q8Epilogue&);
void qgemm_q8_u8_32x64__amxemu_dot(int, int, const uint8_t*, int64_t, const int8_t*, int64_t, int32_t*, int64_t);

namespace {
const KernelInfo kTable[] = {
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) \
  {KernelKind::kind, isa_bit, #name, mr, np, gemv, reinterpret_cast<void*>(&name), SLIMNN_DOT_##kind(isa_word, name)},
#include "kernels/qgemm/kernels.inc"
#undef SLIMNN_KERNEL
};

// Test-only kernels: portable emulations of ISA kernels, run by name (tests), never by select_kernel.
const KernelInfo kEmulated[] = {
    {KernelKind::kQ8Dyn, kIsaPortable, "qgemm_q8_u8_32x64__amxemu", 32, 4, false,
     reinterpret_cast<void*>(&qgemm_q8_u8_32x64__amxemu), &qgemm_q8_u8_32x64__amxemu_dot, &quantize_row_u8__portable},
    {KernelKind::kQ8WoPanel, kIsaPortable, "qgemm_q8_f32_32x32__amxemu", 32, 2, false,
     reinterpret_cast<void*>(&qgemm_q8_f32_32x32__amxemu), nullptr, nullptr},
};

// The AMX crossover: AMX kernels are chosen from this many rows on, below it the best other ISA's.
// NOT MEASURED (no AMX machine so far): a default from public experience, to be measured on a Xeon with AMX
// (bench/bench_qgemm.py, the AMX rows against avx512vnni at M = 1..32) and changed here. Reasoning: at small
// M both paths stream the weights at about the same rate (a 1 KiB B tile per tdpbusd vs 64 B per vpdpbusd
// per row), so AMX's 8x more multiply-adds per cycle only pay once an A tile holds several rows; ggml's
// ggml-cpu/amx/mmq.cpp (ggml_backend_amx_mul_mat) keeps M == 1 on its AVX-512 VNNI tinygemm and uses AMX
// 32 x 32 blocks from M = 2; oneDNN's brgemm matmul uses AMX for every M. 4 sits between the two.
constexpr int64_t kAmxMinRows = 4;
}  // namespace

const KernelInfo* kernel_table(int* count) { return table_out(kTable, count); }

const KernelInfo* emulated_kernel_table(int* count) { return table_out(kEmulated, count); }

int64_t kernel_min_rows(const KernelInfo& k) {
  if (k.kind == KernelKind::kQ8WoPanel) return wo_panel_kernel_min_rows(k.isa);  // AMX-BF16: opt-in (wogemm.h)
  return k.isa == kIsaAmx ? kAmxMinRows : 0;
}

const KernelInfo* select_kernel(KernelKind kind, int64_t m, uint32_t isa_mask) {
  return select_for_rows(kTable, m, isa_mask,
                         [kind, m](const KernelInfo& k) { return k.kind == kind && m >= kernel_min_rows(k); });
}

const KernelInfo* select_linear_kernel(KernelKind kind, int64_t m, uint32_t isa_mask) {
  // The AMX-BF16 panels, once opted in, take the panel path from their own row count on.
  const bool bf16 = (isa_mask & kIsaAmxBf16) && m >= wo_amx_bf16_min_rows();
  if (kind == KernelKind::kQ8Wo && (m >= wo_panel_min_rows(false) || bf16)) kind = KernelKind::kQ8WoPanel;
  return select_kernel(kind, m, isa_mask);
}

}  // namespace slimnn
