// The attention driver: splits a problem into (batch, head, query block) tiles and runs them in one parallel
// region. Compiled without ISA flags: all SIMD lives in the tile kernels (x86_*.cc).
#include <algorithm>
#include <atomic>
#include <cstring>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/attention/attention.h"

namespace slimnn {
namespace {

int64_t cdiv(int64_t x, int64_t m) { return (x + m - 1) / m; }
int64_t round16(int64_t x) { return (x + 15) / 16 * 16; }

}  // namespace

int64_t attn_work_floats(int64_t mq, int64_t d, int64_t dv) {
  // kt [d][kAttnKtStride] + scores [kAttnMaxRows][bk] + bool-mask row [bk] + oacc [mq][dv rounded to 16] + max,
  // sum [mq] each
  return d * kAttnKtStride + kAttnMaxRows * kAttnBlockK + kAttnBlockK + mq * round16(dv) + 2 * round16(mq) + 16;
}

const AttnKernelInfo* attention_f32(const AttnProblem& p, int nthreads, uint32_t isa_mask,
                                    const AttnKernelInfo* kernel) {
  const AttnKernelInfo* ki = kernel ? kernel : select_attention_kernel(isa_mask);
  if (p.b <= 0 || p.hq <= 0 || p.lq <= 0 || p.dv <= 0) return ki;
  if (p.lk <= 0) {  // softmax over no keys: torch gives zeros
    for (int64_t b = 0; b < p.b; ++b)
      for (int64_t h = 0; h < p.hq; ++h)
        for (int64_t i = 0; i < p.lq; ++i) std::memset(p.o + b * p.o_sb + h * p.o_sh + i * p.o_sl, 0, p.dv * sizeof(float));
    return ki;
  }
  nthreads = std::max(1, nthreads);
  // Query blocks: at most 64 rows (bounds the tile's scratch), and with several threads split further until
  // there are about 4 tasks per thread (balance on shared cores), down to blocks of 8 rows: every block reads
  // all of its head's keys and values, so a few query rows (one decode position's grouped-query heads) stay
  // one task. Rows are computed independently of the grouping, so the result does not depend on nthreads.
  const int64_t bh = p.b * p.hq;
  int64_t n_qb = cdiv(p.lq, 64);
  const int64_t want = 4 * int64_t(nthreads);
  if (nthreads > 1 && bh * n_qb < want) n_qb = std::min(cdiv(p.lq, 8), std::max(n_qb, cdiv(want, bh)));
  const int64_t bq = cdiv(p.lq, n_qb);
  n_qb = cdiv(p.lq, bq);
  const int64_t n_tasks = bh * n_qb;
  const int workers = int(std::min<int64_t>(nthreads, n_tasks));
  const int64_t per_worker = (attn_work_floats(bq, p.d, p.dv) + 15) / 16 * 16;
  auto work = scratch<float>(per_worker * workers);
  const int64_t group = p.hq / p.hkv;
  std::atomic<int64_t> next{0};
  auto worker = [&](int64_t w) {
    AttnTile t;
    t.ldq = p.q_sl;
    t.ldk = p.k_sl;
    t.ldv = p.v_sl;
    t.ldo = p.o_sl;
    t.lk = p.lk;
    t.d = p.d;
    t.dv = p.dv;
    t.scale = p.scale;
    t.mask_kind = p.mask_kind;
    t.ldm = p.m_sl;
    t.work = work.get() + w * per_worker;
    for (;;) {
      const int64_t task = next.fetch_add(1, std::memory_order_relaxed);
      if (task >= n_tasks) break;
      const int64_t qb = task % n_qb, hb = task / n_qb;
      const int64_t b = hb / p.hq, h = hb % p.hq, hk = h / group;
      const int64_t i0 = qb * bq;
      t.mq = std::min(bq, p.lq - i0);
      t.q = p.q + b * p.q_sb + h * p.q_sh + i0 * p.q_sl;
      t.k = p.k + b * p.k_sb + hk * p.k_sh;
      t.v = p.v + b * p.v_sb + hk * p.v_sh;
      t.o = p.o + b * p.o_sb + h * p.o_sh + i0 * p.o_sl;
      if (p.mask_kind == 1)
        t.mask = static_cast<const uint8_t*>(p.mask) + b * p.m_sb + h * p.m_sh + i0 * p.m_sl;
      else if (p.mask_kind == 2)
        t.mask = static_cast<const float*>(p.mask) + b * p.m_sb + h * p.m_sh + i0 * p.m_sl;
      else
        t.mask = nullptr;
      t.causal = p.causal ? i0 : -1;
      ki->fn(t);
    }
  };
  parallel_for(workers, workers, worker);
  return ki;
}

}  // namespace slimnn
