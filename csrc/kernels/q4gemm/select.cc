#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/quantizers.h"  // the q8 row quantizers, reused by the dyn kernels of the same ISA
#include "kernels/wogemm/wogemm.h"

namespace slimnn {

#define SLIMNN_DECL_kQ4Dyn(isa_word, name)                                                         \
  void name(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&);       \
  void name##_dot(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&, \
                  int32_t*, int64_t);
#define SLIMNN_DECL_kQ4Wo(isa_word, name) \
  void name(int, int, const float*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&);
#define SLIMNN_DECL_kQ4WoPanel(isa_word, name) void name(const Q4View&, const WoPanelTask&);
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) SLIMNN_DECL_##kind(isa_word, name)
#include "kernels/q4gemm/kernels.inc"
#undef SLIMNN_KERNEL

#define SLIMNN_DOT_kQ4Dyn(isa_word, name) &name##_dot, &quantize_row_u8__##isa_word
#define SLIMNN_DOT_kQ4Wo(isa_word, name) nullptr, nullptr
#define SLIMNN_DOT_kQ4WoPanel(isa_word, name) nullptr, nullptr

void qgemm_q4_u8_32x64__amxemu(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&);
void qgemm_q4_u8_32x64__amxemu_dot(int, int, const uint8_t*, int64_t, const uint8_t*, int64_t, const Q4Epilogue&,
                                   int32_t*, int64_t);

namespace {
// The kernels that add the float-zero offset term themselves (Q4Epilogue::fzeros); for the others the driver
// adds it after each kernel call.
constexpr bool same_name(const char* a, const char* b) { return *a == *b && (*a == 0 || same_name(a + 1, b + 1)); }
constexpr bool fz_fused(const char* name) {
  return same_name(name, "qgemm_q4_u8_1x128__avx512vnni") || same_name(name, "qgemm_q4_u8_2x16__avx2");
}

const Q4KernelInfo kTable[] = {
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv)                                    \
  {Q4KernelKind::kind, isa_bit, #name, mr, np, gemv, reinterpret_cast<void*>(&name), \
   SLIMNN_DOT_##kind(isa_word, name), fz_fused(#name)},
#include "kernels/q4gemm/kernels.inc"
#undef SLIMNN_KERNEL
};

// Test-only kernels: portable emulations of ISA kernels, run by name (tests), never by q4_select_kernel.
const Q4KernelInfo kEmulated[] = {
    {Q4KernelKind::kQ4Dyn, kIsaPortable, "qgemm_q4_u8_32x64__amxemu", 32, 4, false,
     reinterpret_cast<void*>(&qgemm_q4_u8_32x64__amxemu), &qgemm_q4_u8_32x64__amxemu_dot, &quantize_row_u8__portable, false},
    {Q4KernelKind::kQ4WoPanel, kIsaPortable, "qgemm_q4_f32_32x32__amxemu", 32, 2, false,
     reinterpret_cast<void*>(&qgemm_q4_f32_32x32__amxemu), nullptr, nullptr, false},
};

// The W4A8 AMX crossover: the AMX kernel is chosen from this many rows on, below it the best other ISA's.
// NOT MEASURED (no AMX machine so far): the q8 AMX kernel's default (qgemm/select.cc kAmxMinRows, same
// reasoning), to be measured on a Xeon with AMX against qgemm_q4_u8_8x32__avx512vnni at M = 1..32 and changed
// here. The q4 kernel also unpacks each 64-K piece of a panel pair (1 KiB of bytes) per row block of up to 32
// rows, work the VNNI kernel does in registers per 8 rows, which argues for a crossover no lower than q8's.
constexpr int64_t kQ4AmxMinRows = 4;
}  // namespace

const Q4KernelInfo* q4_kernel_table(int* count) { return table_out(kTable, count); }

const Q4KernelInfo* q4_emulated_kernel_table(int* count) { return table_out(kEmulated, count); }

int64_t q4_kernel_min_rows(const Q4KernelInfo& k) {
  if (k.kind == Q4KernelKind::kQ4WoPanel) return wo_panel_kernel_min_rows(k.isa);  // AMX-BF16: opt-in (wogemm.h)
  return k.isa == kIsaAmx ? kQ4AmxMinRows : 0;
}

const Q4KernelInfo* q4_select_kernel(Q4KernelKind kind, int64_t m, uint32_t isa_mask) {
  const bool bf16 = (isa_mask & kIsaAmxBf16) && m >= wo_amx_bf16_min_rows();  // opted in (wogemm.h)
  if (kind == Q4KernelKind::kQ4Wo && (m >= wo_panel_min_rows(true) || bf16)) kind = Q4KernelKind::kQ4WoPanel;
  return select_for_rows(kTable, m, isa_mask,
                         [kind, m](const Q4KernelInfo& k) { return k.kind == kind && m >= q4_kernel_min_rows(k); });
}

}  // namespace slimnn
