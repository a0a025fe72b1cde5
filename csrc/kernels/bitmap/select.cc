#include "common/isa.h"
#include "common/kernel_table.h"
#include "kernels/bitmap/bitmap.h"

namespace slimnn {

#define SLIMNN_BITMAP_KERNEL(isa_bit, isa_word, name, mt, gemv) \
  void name(const BitmapView&, int64_t, int64_t, const uint8_t*, int64_t, int, int32_t*, int64_t);
#include "kernels/bitmap/kernels.inc"
#undef SLIMNN_BITMAP_KERNEL

namespace {
const BitmapKernelInfo kTable[] = {
#define SLIMNN_BITMAP_KERNEL(isa_bit, isa_word, name, mt, gemv) {isa_bit, #name, mt, gemv, &name},
#include "kernels/bitmap/kernels.inc"
#undef SLIMNN_BITMAP_KERNEL
};
}  // namespace

const BitmapKernelInfo* bitmap_kernel_table(int* count) { return table_out(kTable, count); }

const BitmapKernelInfo* select_bitmap(int64_t m, uint32_t isa_mask) { return select_for_rows(kTable, m, isa_mask); }

}  // namespace slimnn
