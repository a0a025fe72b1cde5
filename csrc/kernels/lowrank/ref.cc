// Portable reference micro-kernel: plain C++, compiled without ISA flags. The fallback on every CPU and the
// model the ISA kernels are tested against. Eight partial sums per output (lanes over c mod 8), folded at the
// end, so the compiler may vectorize it with baseline SSE2 without reassociating anything itself.
#include "kernels/lowrank/lowrank.h"

namespace slimnn {

void lowrank_f32_1x4__portable(int mr, int nr, int64_t k, const float* x, int64_t ldx, const float* w, int64_t ldw,
                               const float* bias, float* y, int64_t ldy) {
  for (int i = 0; i < mr; ++i) {
    const float* xi = x + i * ldx;
    for (int j = 0; j < nr; ++j) {
      const float* wj = w + j * ldw;
      float part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t c = 0;
      for (; c + 8 <= k; c += 8)
        for (int l = 0; l < 8; ++l) part[l] += xi[c + l] * wj[c + l];
      for (int l = 0; c + l < k; ++l) part[l] += xi[c + l] * wj[c + l];
      const float s = ((part[0] + part[4]) + (part[1] + part[5])) + ((part[2] + part[6]) + (part[3] + part[7]));
      y[i * ldy + j] = bias ? s + bias[j] : s;
    }
  }
}

}  // namespace slimnn
