// The row quantizers of the build, quantize_row_u8__<isa> (QuantizeRowU8, qgemm.h), declared once from
// kernels.inc: one for every ISA with a kQ8Dyn kernel. qgemm's selector and q4gemm's (whose dyn kernels reuse
// the q8 quantizer of their ISA) both include this.
#pragma once
#include <cstdint>

namespace slimnn {

#define SLIMNN_Q8_QUANT_kQ8Dyn(isa_word) \
  bool quantize_row_u8__##isa_word(const float*, int64_t, int64_t, uint8_t*, float*, int32_t*);
#define SLIMNN_Q8_QUANT_kQ8Wo(isa_word)
#define SLIMNN_Q8_QUANT_kQ8WoPanel(isa_word)
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) SLIMNN_Q8_QUANT_##kind(isa_word)
#include "kernels/qgemm/kernels.inc"
#undef SLIMNN_KERNEL
#undef SLIMNN_Q8_QUANT_kQ8WoPanel
#undef SLIMNN_Q8_QUANT_kQ8Wo
#undef SLIMNN_Q8_QUANT_kQ8Dyn

}  // namespace slimnn
