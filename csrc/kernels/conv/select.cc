#include "common/isa.h"
#include "kernels/conv/conv.h"

namespace slimnn {

#define SLIMNN_CONV_DW(kind, isa_bit, isa_word, name) void name(const DwArgs&, int64_t, int64_t);
#define SLIMNN_CONV_QUANT(isa_bit, isa_word)                            \
  bool conv_minmax__##isa_word(const float*, int64_t, float*, float*); \
  void conv_quantize_u8__##isa_word(const float*, int64_t, float, int32_t, uint8_t*); \
  void conv_clamp__##isa_word(float*, int64_t, float, float); \
  bool conv_requant_u8__##isa_word(const float*, int64_t, float, int32_t, int32_t, int32_t, uint8_t*); \
  void conv_hardswish__##isa_word(float*, int64_t);
#include "kernels/conv/kernels.inc"
#undef SLIMNN_CONV_DW
#undef SLIMNN_CONV_QUANT

namespace {
const DwKernelInfo kDw[] = {
#define SLIMNN_CONV_DW(kind, isa_bit, isa_word, name) {DwKind::kind, isa_bit, #name, &name},
#define SLIMNN_CONV_QUANT(isa_bit, isa_word)
#include "kernels/conv/kernels.inc"
#undef SLIMNN_CONV_DW
#undef SLIMNN_CONV_QUANT
};
const ConvQuantInfo kQuant[] = {
#define SLIMNN_CONV_DW(kind, isa_bit, isa_word, name)
#define SLIMNN_CONV_QUANT(isa_bit, isa_word) \
  {isa_bit, "conv_quantize_u8__" #isa_word, &conv_minmax__##isa_word, &conv_quantize_u8__##isa_word, \
   &conv_clamp__##isa_word, &conv_requant_u8__##isa_word, &conv_hardswish__##isa_word},
#include "kernels/conv/kernels.inc"
#undef SLIMNN_CONV_DW
#undef SLIMNN_CONV_QUANT
};
}  // namespace

const DwKernelInfo* conv_dw_kernel_table(int* count) {
  *count = sizeof(kDw) / sizeof(kDw[0]);
  return kDw;
}

const DwKernelInfo* select_conv_dw(DwKind kind, uint32_t isa_mask) {
  for (const DwKernelInfo& k : kDw)
    if (k.kind == kind && (k.isa & isa_mask) != 0) return &k;
  return nullptr;  // unreachable: the portable kernels are always built
}

const ConvQuantInfo* conv_quant_table(int* count) {
  *count = sizeof(kQuant) / sizeof(kQuant[0]);
  return kQuant;
}

const ConvQuantInfo* select_conv_quant(uint32_t isa_mask) {
  for (const ConvQuantInfo& k : kQuant)
    if ((k.isa & isa_mask) != 0) return &k;
  return nullptr;  // unreachable
}

}  // namespace slimnn
