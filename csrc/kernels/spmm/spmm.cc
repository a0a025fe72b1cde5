// The threaded spmm driver: transposes activations into tiles of the kernel's MT rows (zero-padded), splits
// the units (slices, block rows or rows) into chunks of equal work by the prefix sums of their entry
// counts, runs the selected micro-kernel on every (tile, chunk) and transposes the result back, adding the
// bias. Compiled without ISA flags: all SIMD lives in the ISA files.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace {

// Rows of xt the kernel may read (see spmm.h).
int64_t xt_rows(const SparseView& w, const SpmmKernelInfo* ki) {
  switch (w.format) {
    case FormatId::kSparseCsr: return w.k + int64_t(ki->xpad_slots) * csr_max_delta(w.index_bits);
    case FormatId::kBsr: return w.kb * w.bc;
    default: return w.kc * kNmChunk;
  }
}

// Work before unit u, in entries; a unit also costs a fixed overhead (its stores and set-up), measured
// to be about that of two entries on the AVX-512 kernels.
int64_t work_before(const SparseView& w, int64_t u) {
  constexpr int64_t kUnitOverhead = 2;
  if (w.format == FormatId::kNm) return u * (w.kc * w.vpc / kSellLanes + kUnitOverhead);
  return int64_t(w.ptr[u]) + kUnitOverhead * u;
}

// Chunk boundaries: chunk i is [b[i], b[i+1]), each with about total / chunks of work.
std::vector<int64_t> split_units(const SparseView& w, int64_t chunks) {
  const int64_t units = w.n_units;
  chunks = std::max<int64_t>(1, std::min(chunks, units));
  std::vector<int64_t> b(chunks + 1);
  const int64_t total = work_before(w, units);
  b[0] = 0;
  int64_t u = 0;
  for (int64_t i = 1; i < chunks; ++i) {
    const int64_t target = total / chunks * i + total % chunks * i / chunks;
    int64_t lo = u, hi = units;  // first unit with work_before >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (work_before(w, mid) < target) lo = mid + 1; else hi = mid;
    }
    b[i] = u = lo;
  }
  b[chunks] = units;
  return b;
}

// A parallel region costs several microseconds to start and join (far more when the machine is loaded and
// a worker has been descheduled), so each thread must bring at least this much work: about 20 us of kernel
// time (multiply-adds, or elements for the copies). Rough, from timings on a 2-core Zen 4.
constexpr int64_t kWorkPerThread = int64_t{1} << 16;

int threads_for(int64_t work, int nthreads) {
  const int64_t t = work / kWorkPerThread;
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(nthreads, t)));
}

// Stored entries (values, zero fillers included) of the whole matrix.
int64_t stored_entries(const SparseView& w) {
  switch (w.format) {
    case FormatId::kSparseCsr: return w.n_entries * kSellLanes;
    case FormatId::kBsr: return w.n_entries * w.br * w.bc;
    default: return w.n * w.kc * w.vpc;
  }
}

// True if the k floats hold no NaN or infinity (bit test: vectorizes, no FP exceptions).
bool row_finite(const float* x, int64_t k) {
  uint32_t bad = 0;
  for (int64_t i = 0; i < k; ++i) {
    uint32_t u;
    std::memcpy(&u, x + i, 4);
    bad |= static_cast<uint32_t>((u & 0x7F800000u) == 0x7F800000u);
  }
  return bad == 0;
}

}  // namespace

const SpmmKernelInfo* sparse_linear(const SparseView& w, const float* x, int64_t m, int64_t ldx, const float* bias,
                                    float* y, int64_t ldy, int nthreads, uint32_t isa_mask,
                                    const SpmmKernelInfo* forced) {
  const SpmmKind kind = spmm_kind(w);
  const SpmmKernelInfo* ki = forced ? forced : select_spmm(kind, m, isa_mask);
  if (ki->kind != kind) throw std::invalid_argument(std::string("kernel ") + ki->name + " does not fit this format");
  if (m <= 0) return ki;
  nthreads = std::max(1, nthreads);
  const int64_t MT = ki->mt, k = w.k, n = w.n;
  const int64_t kx = xt_rows(w, ki);
  const int64_t tiles = (m + MT - 1) / MT;

  // 1. Activations: xt[tile][kx][MT], zero-padded along K and M; rows with a NaN or an infinity noted.
  auto xt = scratch<float>(tiles * kx * MT);
  auto finite = scratch<uint8_t>(m);
  constexpr int64_t kBlock = 256;
  const int64_t kblocks = (kx + kBlock - 1) / kBlock;
  auto prepare = [&](int64_t t) {
    const int64_t tile = t / kblocks, k0 = (t % kblocks) * kBlock, k1 = std::min(kx, k0 + kBlock);
    float* dst = xt.get() + tile * kx * MT;
    const int64_t rows = std::min(MT, m - tile * MT);
    const float* src = x + tile * MT * ldx;
    if (k0 == 0)
      for (int64_t r = 0; r < rows; ++r) finite[tile * MT + r] = row_finite(src + r * ldx, k);
    if (MT == 1) {
      const int64_t kr = std::max<int64_t>(k0, std::min(k1, k));
      std::memcpy(dst + k0, src + k0, (kr - k0) * sizeof(float));
      std::memset(dst + kr, 0, (k1 - kr) * sizeof(float));
      return;
    }
    for (int64_t kk = k0; kk < k1; ++kk) {
      float* d = dst + kk * MT;
      if (kk >= k) {
        std::memset(d, 0, MT * sizeof(float));
        continue;
      }
      int64_t r = 0;
      for (; r < rows; ++r) d[r] = src[r * ldx + kk];
      for (; r < MT; ++r) d[r] = 0.0f;
    }
  };
  parallel_for(tiles * kblocks, threads_for(tiles * kx * MT, nthreads), prepare);

  // 2. The kernel over (tile, chunk) tasks. One tile of one row writes straight into y.
  const bool direct = tiles == 1 && MT == 1;
  std::unique_ptr<float[], FreeDeleter> ytbuf;
  if (!direct) ytbuf = scratch<float>(tiles * n * MT);
  float* yt = direct ? y : ytbuf.get();
  const int compute_threads = threads_for(stored_entries(w) * MT * tiles, nthreads);
  parallel_tile_chunks(
      tiles, compute_threads, [&](int64_t want) { return split_units(w, want); },
      [&](int64_t tile, int64_t u0, int64_t u1) { ki->fn(w, u0, u1, xt.get() + tile * kx * MT, yt + tile * n * MT); });

  // 3. Back to y[m][n], plus bias; NaN rows for non-finite inputs.
  constexpr int64_t kNBlock = 1024;
  const int64_t nblocks = (n + kNBlock - 1) / kNBlock;
  auto finish = [&](int64_t t) {
    const int64_t tile = t / nblocks, n0 = (t % nblocks) * kNBlock, n1 = std::min(n, n0 + kNBlock);
    const int64_t rows = std::min(MT, m - tile * MT);
    const float* src = yt + tile * n * MT;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t row = tile * MT + r;
      float* dst = y + row * ldy;
      if (!finite[row]) {
        std::fill(dst + n0, dst + n1, std::numeric_limits<float>::quiet_NaN());
        continue;
      }
      if (direct) {
        if (bias)
          for (int64_t j = n0; j < n1; ++j) dst[j] += bias[j];
        continue;
      }
      if (bias)
        for (int64_t j = n0; j < n1; ++j) dst[j] = src[j * MT + r] + bias[j];
      else
        for (int64_t j = n0; j < n1; ++j) dst[j] = src[j * MT + r];
    }
  };
  parallel_for(tiles * nblocks, threads_for(tiles * n * MT, nthreads), finish);
  return ki;
}

}  // namespace slimnn
