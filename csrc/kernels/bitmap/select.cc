#include "common/isa.h"
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
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);
}  // namespace

const BitmapKernelInfo* bitmap_kernel_table(int* count) {
  *count = kTableSize;
  return kTable;
}

const BitmapKernelInfo* select_bitmap(int64_t m, uint32_t isa_mask) {
  const BitmapKernelInfo* first = nullptr;
  for (const BitmapKernelInfo& k : kTable) {
    if ((k.isa & isa_mask) == 0) continue;
    if (first == nullptr) first = &k;
    if (first->isa != k.isa) break;  // only kernels of the best available ISA compete
    if (k.gemv == (m == 1)) return &k;
  }
  return first;
}

}  // namespace slimnn
