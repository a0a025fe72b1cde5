// The lowrank drivers: both products of y = (x V^T) U^T + b, and the optional sparse residual, in one
// parallel region. Compiled without ISA flags: all SIMD lives in the micro-kernels (x86_*.cc, qgemm's).
#include "kernels/lowrank/lowrank.h"

#include <algorithm>
#include <cmath>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "formats/header.h"
#include "kernels/qgemm/driver.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SLIMNN_LR_PAUSE() _mm_pause()
#else
#define SLIMNN_LR_PAUSE() ((void)0)
#endif

namespace slimnn {
namespace {

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
int64_t cdiv(int64_t x, int64_t m) { return (x + m - 1) / m; }

// One phase of a region: n chunks, each fn(ctx, chunk). Chunks of a phase may run in any order and on any
// worker; every chunk of phase p finishes before any chunk of phase p + 1 starts.
struct Phase {
  int64_t n = 0;
  TaskFn fn = nullptr;
  void* ctx = nullptr;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
};

template <typename F>
void set_phase(Phase& p, int64_t n, F& f) {
  p.n = n;
  p.fn = [](void* c, int64_t t) { (*static_cast<F*>(c))(t); };
  p.ctx = &f;
}

// Runs the phases in order inside ONE parallel_for of `nthreads` tasks. Each task walks the phases: it takes
// chunks of the current phase from the phase's own counter until none are left, then waits until the chunks
// other workers took are done, and moves on. A task only ever waits for chunks that a running task has taken
// and is executing (taking and executing are one step of a live task), so this cannot deadlock however
// parallel_for schedules its tasks: run one after another (nested region, busy pool, after fork), the first
// task does all the work and the others find nothing left.
void run_phases(Phase* phases, int count, int nthreads) {
  auto worker = [&](int64_t) {
    for (int p = 0; p < count; ++p) {
      Phase& ph = phases[p];
      for (;;) {
        const int64_t t = ph.next.fetch_add(1, std::memory_order_relaxed);
        if (t >= ph.n) break;
        ph.fn(ph.ctx, t);
        ph.done.fetch_add(1, std::memory_order_release);
      }
      int spins = 0;
      while (ph.done.load(std::memory_order_acquire) < ph.n) {
        SLIMNN_LR_PAUSE();
        if (++spins % 1024 == 0) std::this_thread::yield();  // shared cores: let the chunk's owner run
      }
    }
  };
  parallel_for(std::max(1, nthreads), std::max(1, nthreads), worker);
}

// y[i][n] += sum_j S[n][col_j] x[i][col_j] for rows [i0, i1) and outputs [n0, n1).
void add_residual(const CsrResidual& s, const float* x, int64_t ldx, int64_t i0, int64_t i1, int64_t n0,
                  int64_t n1, float* y, int64_t ldy) {
  for (int64_t i = i0; i < i1; ++i) {
    const float* xi = x + i * ldx;
    float* yi = y + i * ldy;
    for (int64_t n = n0; n < n1; ++n) {
      float acc = 0.0f;
      for (int64_t j = s.rowptr[n]; j < s.rowptr[n + 1]; ++j) {
        const int64_t c = s.col[j];
        if (static_cast<uint64_t>(c) < static_cast<uint64_t>(s.k)) acc += s.val[j] * xi[c];  // never out of x
      }
      yi[n] += acc;
    }
  }
}

// Blocking of one product C (M x NW) = A (M x KD) B^T with B row-major (NW x KD), in chunks of
// (rows of B) x (rows of A). Derivation: about 2^18 multiply-adds per chunk keeps the region's bookkeeping
// under 1%; at least 4 chunks per thread when the shape allows, for balance on shared cores. Rows of A are
// blocked by 64 so that an A block and a B block stay in L2 (measured on Zen 4, 1 MB L2; untested elsewhere).
struct GemmPlan {
  int64_t br, bm, n_nb, n_mb;
};

GemmPlan plan_gemm(int64_t m, int64_t nw, int64_t kd, int mr, int nr, int nthreads) {
  GemmPlan p;
  p.bm = std::min(m, round_up(64, mr));
  int64_t br = (int64_t{1} << 18) / std::max<int64_t>(1, kd * p.bm);
  if (nthreads > 1) br = std::min(br, cdiv(nw, 4 * int64_t(nthreads)));
  p.br = std::min(round_up(std::max<int64_t>(br, 1), nr), round_up(nw, nr));
  p.n_nb = cdiv(nw, p.br);
  p.n_mb = cdiv(m, p.bm);
  return p;
}

// One chunk of C = A B^T (+ bias): B rows [j0, j1), A rows [i0, i1), each micro-tile over the whole of K.
// (Cutting K in L1-sized slices was measured slower on Zen 4 at M = 16, K = 4096: the dot-product tiles
// then pay their horizontal sums once per slice, more than the L2 traffic they save.)
void f32_chunk(const LrKernelInfo* ki, const float* a, int64_t lda, const float* b, int64_t ldb, int64_t kd,
               const float* bias, float* c, int64_t ldc, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; j += ki->nr) {
    const int nr = int(std::min<int64_t>(ki->nr, j1 - j));
    for (int64_t i = i0; i < i1; i += ki->mr) {
      const int mr = int(std::min<int64_t>(ki->mr, i1 - i));
      ki->fn(mr, nr, kd, a + i * lda, lda, b + j * ldb, ldb, bias ? bias + j : nullptr, c + i * ldc + j, ldc);
    }
  }
}

}  // namespace

void lowrank_check_csr(const CsrResidual& s) {
  auto fail = [](const std::string& w) { throw FormatError("slimnn sparse residual: " + w); };
  if (s.n <= 0 || s.k <= 0 || s.nnz < 0) fail("bad dimensions");
  if (s.rowptr == nullptr || (s.nnz > 0 && (s.col == nullptr || s.val == nullptr))) fail("null arrays");
  if (s.rowptr[0] != 0) fail("rowptr[0] must be 0");
  for (int64_t n = 0; n < s.n; ++n)
    if (s.rowptr[n + 1] < s.rowptr[n]) fail("rowptr decreases at row " + std::to_string(n));
  if (s.rowptr[s.n] != s.nnz) fail("rowptr[n] != nnz");
  for (int64_t j = 0; j < s.nnz; ++j) {
    if (s.col[j] < 0 || s.col[j] >= s.k) fail("column index out of range at entry " + std::to_string(j));
    if (!(std::abs(s.val[j]) <= std::numeric_limits<float>::max())) fail("non-finite value at entry " + std::to_string(j));
  }
}

const LrKernelInfo* lowrank_f32_linear(const float* x, int64_t m, int64_t ldx, const LowRankF32& w,
                                       const float* bias, const CsrResidual* residual, float* y, int64_t ldy,
                                       int nthreads, uint32_t isa_mask, const LrKernelInfo* kernel) {
  const LrKernelInfo* ki = kernel ? kernel : select_lowrank_kernel(m, isa_mask);
  if (m <= 0) return ki;
  nthreads = std::max(1, nthreads);
  const int64_t r = w.r;
  auto t = scratch<float>(m * r);
  const GemmPlan p1 = plan_gemm(m, r, w.k, ki->mr, ki->nr, nthreads);
  const GemmPlan p2 = plan_gemm(m, w.n, r, ki->mr, ki->nr, nthreads);
  auto phase1 = [&](int64_t c) {
    const int64_t nb = c / p1.n_mb, mb = c % p1.n_mb;
    const int64_t j0 = nb * p1.br, i0 = mb * p1.bm;
    f32_chunk(ki, x, ldx, w.v, w.k, w.k, nullptr, t.get(), r, i0, std::min(m, i0 + p1.bm), j0,
              std::min(r, j0 + p1.br));
  };
  auto phase2 = [&](int64_t c) {
    const int64_t nb = c / p2.n_mb, mb = c % p2.n_mb;
    const int64_t j0 = nb * p2.br, i0 = mb * p2.bm;
    const int64_t i1 = std::min(m, i0 + p2.bm), j1 = std::min(w.n, j0 + p2.br);
    f32_chunk(ki, t.get(), r, w.u, r, r, bias, y, ldy, i0, i1, j0, j1);
    if (residual) add_residual(*residual, x, ldx, i0, i1, j0, j1, y, ldy);
  };
  Phase ph[2];
  set_phase(ph[0], p1.n_nb * p1.n_mb, phase1);
  set_phase(ph[1], p2.n_nb * p2.n_mb, phase2);
  run_phases(ph, 2, nthreads);
  return ki;
}

namespace {

// Tasks of one q8 product: qgemm's plan (column blocks of the kernel's panels x row blocks).
using Q8Plan = qdriver::Blocking;

Q8Plan plan_q8(const KernelInfo* ki, int64_t m, const Q8View& w, int nthreads) {
  return qdriver::plan(ki->mr, ki->np, m, w.np, nthreads);
}

// One task of a q8 product: rows [r0, r1) x panel block nb. `a` is u8 (dyn) or fp32 (wo) with row stride lda.
// The task's output bounds are returned through the *_out pointers unless n0_out is null.
void q8_task(const KernelInfo* ki, const Q8View& w, const Q8Plan& b, int64_t t, int64_t m, const void* a,
             int64_t lda, const float* a_scale, const int32_t* a_zp, const float* bias, float* y, int64_t ldy,
             int64_t* n0_out, int64_t* n1_out, int64_t* r0_out, int64_t* r1_out) {
  const int64_t nb = t / b.n_mb, mb = t % b.n_mb;
  const qdriver::ColBlock c = qdriver::col_block(nb, ki->np, w.np / 16);
  const int64_t r0 = mb * b.mb_rows, r1 = std::min(m, r0 + b.mb_rows);
  Q8Epilogue e = qdriver::q8_block_epilogue(qdriver::q8_epilogue(w, ldy), w, bias, c);
  qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
    e.y = y + r * ldy + c.n0;
    if (ki->kind == KernelKind::kQ8Dyn) {
      e.a_scale = a_scale + r;
      e.a_zp = a_zp + r;
      reinterpret_cast<Q8DynUkernel>(ki->fn)(mr, int(c.panels), static_cast<const uint8_t*>(a) + r * lda, lda,
                                              w.w + c.p0 * 16 * w.kp, w.kp, e);
    } else {
      reinterpret_cast<Q8WoUkernel>(ki->fn)(mr, int(c.panels), static_cast<const float*>(a) + r * lda, lda,
                                             w.w + c.p0 * 16 * w.kp, w.kp, e);
    }
  });
  if (n0_out) {
    *n0_out = c.n0;
    *n1_out = c.n0 + e.ncols;
    *r0_out = r0;
    *r1_out = r1;
  }
}

}  // namespace

const KernelInfo* lowrank_q8_linear(KernelKind kind, const float* x, int64_t m, int64_t ldx, const Q8View& v,
                                    const Q8View& u, const float* bias, const CsrResidual* residual, float* y,
                                    int64_t ldy, int nthreads, uint32_t isa_mask) {
  const KernelInfo* ki = select_kernel(kind, m, isa_mask);
  if (m <= 0) return ki;
  nthreads = std::max(1, nthreads);
  const int64_t k = v.k, r = v.n;
  const int64_t ldt = u.kp;  // t's rows are U's activations: kp (>= r) wide
  auto t = scratch<float>(m * ldt);
  const Q8Plan b1 = plan_q8(ki, m, v, nthreads), b2 = plan_q8(ki, m, u, nthreads);
  const int64_t chunk_x = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(k, 1));
  const int64_t chunk_t = std::max<int64_t>(1, (int64_t{1} << 16) / std::max<int64_t>(r, 1));

  if (kind == KernelKind::kQ8Dyn) {
    auto a1 = scratch<uint8_t>(m * v.kp);
    auto a2 = scratch<uint8_t>(m * u.kp);
    auto s1 = scratch<float>(m), s2 = scratch<float>(m);
    auto z1 = scratch<int32_t>(m), z2 = scratch<int32_t>(m);
    auto fin = scratch<uint8_t>(m);
    auto quant_x = [&](int64_t c) {
      for (int64_t i = c * chunk_x; i < std::min(m, (c + 1) * chunk_x); ++i) {
        fin[i] = ki->quantize(x + i * ldx, k, v.kp, a1.get() + i * v.kp, &s1[i], &z1[i]);
        if (!fin[i]) {  // keep later reads defined; the row's output is overwritten with NaN at the end
          std::memset(a1.get() + i * v.kp, 0, v.kp);
          s1[i] = 0.0f;
          z1[i] = 0;
        }
      }
    };
    auto gemm_v = [&](int64_t c) {
      q8_task(ki, v, b1, c, m, a1.get(), v.kp, s1.get(), z1.get(), nullptr, t.get(), ldt, nullptr, nullptr, nullptr, nullptr);
    };
    auto quant_t = [&](int64_t c) {
      for (int64_t i = c * chunk_t; i < std::min(m, (c + 1) * chunk_t); ++i) {
        const bool ok = ki->quantize(t.get() + i * ldt, r, u.kp, a2.get() + i * u.kp, &s2[i], &z2[i]);
        if (!ok) {
          fin[i] = 0;
          std::memset(a2.get() + i * u.kp, 0, u.kp);
          s2[i] = 0.0f;
          z2[i] = 0;
        }
      }
    };
    auto gemm_u = [&](int64_t c) {
      int64_t n0, n1, r0, r1;
      q8_task(ki, u, b2, c, m, a2.get(), u.kp, s2.get(), z2.get(), bias, y, ldy, &n0, &n1, &r0, &r1);
      if (residual) add_residual(*residual, x, ldx, r0, r1, n0, n1, y, ldy);
    };
    Phase ph[4];
    set_phase(ph[0], cdiv(m, chunk_x), quant_x);
    set_phase(ph[1], b1.n_nb * b1.n_mb, gemm_v);
    set_phase(ph[2], cdiv(m, chunk_t), quant_t);
    set_phase(ph[3], b2.n_nb * b2.n_mb, gemm_u);
    run_phases(ph, 4, nthreads);
    for (int64_t i = 0; i < m; ++i)
      if (!fin[i]) std::fill(y + i * ldy, y + i * ldy + u.n, std::numeric_limits<float>::quiet_NaN());
    return ki;
  }

  // Weight-only: the kernel reads kp floats per row. x is used in place when K is already a multiple of 4;
  // t's padding columns [r, u.kp) must be zero (U's padded weights are zero, but 0 * garbage may be NaN).
  std::unique_ptr<float[], FreeDeleter> xbuf;
  const float* xa = x;
  int64_t lda = ldx;
  if (v.kp != k) {
    xbuf = scratch<float>(m * v.kp);
    xa = xbuf.get();
    lda = v.kp;
  }
  auto prep = [&](int64_t c) {
    for (int64_t i = c * chunk_x; i < std::min(m, (c + 1) * chunk_x); ++i) {
      if (xbuf) {
        std::memcpy(xbuf.get() + i * v.kp, x + i * ldx, k * sizeof(float));
        std::fill(xbuf.get() + i * v.kp + k, xbuf.get() + (i + 1) * v.kp, 0.0f);
      }
      std::fill(t.get() + i * ldt + r, t.get() + (i + 1) * ldt, 0.0f);
    }
  };
  auto gemm_v = [&](int64_t c) {
    q8_task(ki, v, b1, c, m, xa, lda, nullptr, nullptr, nullptr, t.get(), ldt, nullptr, nullptr, nullptr, nullptr);
  };
  auto gemm_u = [&](int64_t c) {
    int64_t n0, n1, r0, r1;
    q8_task(ki, u, b2, c, m, t.get(), ldt, nullptr, nullptr, bias, y, ldy, &n0, &n1, &r0, &r1);
    if (residual) add_residual(*residual, x, ldx, r0, r1, n0, n1, y, ldy);
  };
  Phase ph[3];
  set_phase(ph[0], cdiv(m, chunk_x), prep);
  set_phase(ph[1], b1.n_nb * b1.n_mb, gemm_v);
  set_phase(ph[2], b2.n_nb * b2.n_mb, gemm_u);
  run_phases(ph, 3, nthreads);
  return ki;
}

}  // namespace slimnn
