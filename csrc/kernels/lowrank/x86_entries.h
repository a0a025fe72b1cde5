// The exported lowrank kernels of one x86 ISA file, expanded from kernels.inc (so the list is written once).
// Include at the end of the ISA file, inside namespace slimnn, after defining SLIMNN_LR_ISA (the file's ISA
// namespace, which includes x86_dot.h) and SLIMNN_LR_IF_<isa>(name, gemv) as SLIMNN_LR_DEFINE(name, gemv);
// lines of the other ISAs expand to nothing. Gemv entries run gemv_1x8, the others tile_x4.
#define SLIMNN_LR_DEFINE(name, gemv)                                                                     \
  void name(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,          \
            const float* bias, float* y, int64_t ldy) {                                                   \
    if (gemv)                                                                                             \
      SLIMNN_LR_ISA::gemv_1x8(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);                                   \
    else                                                                                                  \
      SLIMNN_LR_ISA::tile_x4(mr, nr, k, x, ldx, w, ldw, bias, y, ldy);                                    \
  }
#ifndef SLIMNN_LR_IF_avx2
#define SLIMNN_LR_IF_avx2(name, gemv)
#endif
#ifndef SLIMNN_LR_IF_avx512
#define SLIMNN_LR_IF_avx512(name, gemv)
#endif
#define SLIMNN_LR_IF_portable(name, gemv)
#define SLIMNN_LR_KERNEL(isa_bit, isa_word, name, mr, nr, gemv) SLIMNN_LR_IF_##isa_word(name, gemv)
#include "kernels/lowrank/kernels.inc"
#undef SLIMNN_LR_KERNEL
#undef SLIMNN_LR_IF_portable
#undef SLIMNN_LR_IF_avx512
#undef SLIMNN_LR_IF_avx2
#undef SLIMNN_LR_DEFINE
