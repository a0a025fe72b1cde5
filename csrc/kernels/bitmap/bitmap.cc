// The threaded bitmap driver: quantizes the activation rows to u8 with the dense int8 path's row quantizer
// (same scale, zero point and rounding as Int8Linear dynamic), splits the row groups into chunks of about
// equal work, runs the selected micro-kernel on every (activation tile, row chunk) for int32 dot products,
// then applies the zero-point, scale and bias epilogue. Compiled without ISA flags.
#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/bitmap/bitmap.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace {

// Work of groups [0, g): every chunk costs about the same (a compress or an expand, whatever its popcount),
// plus a little per nonzero (value bytes streamed). Rough, from the Zen 4 GEMV timings.
// G = 8: per group 8 entries per 256-column window (about a chunk's cost each), plus the stream bytes.
int64_t work_before(const BitmapView& w, int64_t g) {
  if (w.group_rows == kBitmapPermRows) return g * (w.nw * 8 * 16 + 16) + int64_t(w.ptr[g]);
  return g * (w.kc * 16 + 16) + int64_t(w.ptr[g]);
}

std::vector<int64_t> split_groups(const BitmapView& w, int64_t chunks) {
  chunks = std::max<int64_t>(1, std::min(chunks, w.groups));
  std::vector<int64_t> b(chunks + 1);
  const int64_t total = work_before(w, w.groups);
  b[0] = 0;
  int64_t u = 0;
  for (int64_t i = 1; i < chunks; ++i) {
    const int64_t target = total / chunks * i + total % chunks * i / chunks;
    int64_t lo = u, hi = w.groups;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (work_before(w, mid) < target) lo = mid + 1; else hi = mid;
    }
    b[i] = u = lo;
  }
  b[chunks] = w.groups;
  return b;
}

// A parallel region costs several microseconds to start; each thread should bring about 20 us of kernel
// time: ~16K chunk steps (rough, Zen 4).
constexpr int64_t kChunksPerThread = int64_t{1} << 14;

int threads_for(int64_t work, int nthreads) {
  const int64_t t = work / kChunksPerThread;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, t)));
}

}  // namespace

const BitmapKernelInfo* bitmap_linear(const BitmapView& w, const float* x, int64_t m, int64_t ldx, const float* bias,
                                      float* y, int64_t ldy, int nthreads, uint32_t isa_mask,
                                      const BitmapKernelInfo* forced) {
  const BitmapKernelInfo* ki = forced ? forced : select_bitmap(m, isa_mask);
  if (m <= 0) return ki;
  nthreads = std::max(1, nthreads);
  const int64_t k = w.k, n = w.n, kx = bitmap_x_stride(w), MT = ki->mt;
  const QuantizeRowU8 quantize = select_kernel(KernelKind::kQ8Dyn, m, isa_mask)->quantize;

  // 1. Activations to u8 (per row scale and zero point); rows with a NaN or an infinity noted.
  const int64_t tiles = (m + MT - 1) / MT;
  auto xq = scratch<uint8_t>(tiles * MT * kx);  // whole tiles: kernels may read MT rows
  if (tiles * MT > m) std::memset(xq.get() + m * kx, 0, (tiles * MT - m) * kx);
  auto a_scale = scratch<float>(m);
  auto a_zp = scratch<int32_t>(m);
  auto finite = scratch<uint8_t>(m);
  const int64_t rows_per_task = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(k, 1));
  auto quant = [&](int64_t t) {
    const int64_t q0 = t * rows_per_task, q1 = std::min(m, q0 + rows_per_task);
    for (int64_t r = q0; r < q1; ++r) {
      uint8_t* q = xq.get() + r * kx;
      finite[r] = quantize(x + r * ldx, k, kx, q, &a_scale[r], &a_zp[r]);
      if (!finite[r]) {  // keep the kernel's reads defined; the row's output is overwritten below
        std::memset(q, 0, kx);
        a_scale[r] = 0.0f;
        a_zp[r] = 0;
      }
    }
  };
  const int64_t qtasks = (m + rows_per_task - 1) / rows_per_task;
  parallel_for(qtasks, threads_for(m * w.kc / 4, nthreads), quant);

  // 2. Integer dot products over (tile, row chunk) tasks.
  auto dots = scratch<int32_t>(m * n);
  const int compute_threads = threads_for(tiles * w.groups * w.kc, nthreads);
  parallel_tile_chunks(
      tiles, compute_threads, [&](int64_t want) { return split_groups(w, want); },
      [&](int64_t tile, int64_t g0, int64_t g1) {
        const int rows = static_cast<int>(std::min(MT, m - tile * MT));
        ki->fn(w, g0, g1, xq.get() + tile * MT * kx, kx, rows, dots.get() + tile * MT * n, n);
      });

  // 3. y = float(dot - zp * rowsum) * scale * a_scale + bias (wrapping int32, as the dense int8 kernels).
  constexpr int64_t kNBlock = 4096;
  const int64_t nblocks = (n + kNBlock - 1) / kNBlock;
  auto finish = [&](int64_t t) {
    const int64_t row = t / nblocks, n0 = (t % nblocks) * kNBlock, n1 = std::min(n, n0 + kNBlock);
    float* dst = y + row * ldy;
    if (!finite[row]) {
      std::fill(dst + n0, dst + n1, std::numeric_limits<float>::quiet_NaN());
      return;
    }
    const int32_t* d = dots.get() + row * n;
    const uint32_t zp = uint32_t(a_zp[row]);
    const float as = a_scale[row];
    for (int64_t j = n0; j < n1; ++j) {
      const int32_t exact = int32_t(uint32_t(d[j]) - zp * uint32_t(w.rowsum[j]));
      float r = static_cast<float>(exact) * w.scales[j];
      r *= as;
      if (bias) r += bias[j];
      dst[j] = r;
    }
  };
  parallel_for(m * nblocks, threads_for(m * n / 4, nthreads), finish);
  return ki;
}

void bitmap_dots(const BitmapKernelInfo* ki, const BitmapView& w, const uint8_t* xq, int64_t m, int32_t* dots) {
  const int64_t kx = bitmap_x_stride(w), MT = ki->mt;
  auto tile = scratch<uint8_t>(MT * kx);  // a whole tile, so the kernel may read MT rows
  for (int64_t t0 = 0; t0 < m; t0 += MT) {
    const int rows = static_cast<int>(std::min<int64_t>(MT, m - t0));
    std::memset(tile.get(), 0, MT * kx);
    std::memcpy(tile.get(), xq + t0 * kx, rows * kx);
    ki->fn(w, 0, w.groups, tile.get(), kx, rows, dots + t0 * w.n, w.n);
  }
}

}  // namespace slimnn
