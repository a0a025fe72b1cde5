#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/decode/decode.h"

namespace slimnn {

#define SLIMNN_TORCH_SILU(isa_bit, isa_word, name) void name(float* y, int64_t n);
#include "kernels/decode/kernels.inc"
#undef SLIMNN_TORCH_SILU

namespace {
const TorchSiluInfo kTable[] = {
#define SLIMNN_TORCH_SILU(isa_bit, isa_word, name) {isa_bit, #name, &name},
#include "kernels/decode/kernels.inc"
#undef SLIMNN_TORCH_SILU
};
}  // namespace

const TorchSiluInfo* torch_silu_table(int* count) { return table_out(kTable, count); }

const TorchSiluInfo* select_torch_silu(uint32_t isa_mask) { return select_first(kTable, isa_mask); }

}  // namespace slimnn
