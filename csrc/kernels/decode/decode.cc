// The decode step (decode.h): the layer loop over the existing drivers, and the float glue between them in
// the Python step's operation order. Compiled without ISA flags and with -ffp-contract=off (CMakeLists:
// FP_CONTRACT_OFF): every product and sum here is rounded on its own, as torch's elementwise ops round.
#include "kernels/decode/decode.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "common/threadpool.h"
#include "kernels/act/act.h"
#include "kernels/attention/attention.h"
#include "kernels/embed/embed.h"
#include "kernels/lowrank/lowrank.h"
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {
namespace {

constexpr int kMaxLanes = 16;
constexpr int kIlp = 4;       // torch's row_sum: interleaved accumulators
constexpr int kLevels = 4;    // torch's multi_row_sum: cascade levels

using Lanes = std::array<float, kMaxLanes>;

int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  int64_t r = 0;
  for (uint64_t v = uint64_t(x) - 1; v != 0; v >>= 1) ++r;
  return r;
}

// torch's multi_row_sum + row_sum over `size` vectors of `lanes` floats at x (vector i at x + i * lanes):
// the vectors are read as rows of kIlp; each accumulator column sums its rows in a cascade of levels
// (16-step blocks folded upwards), then the tail vectors go to column 0 and the columns are added in order.
Lanes row_sum(const float* x, int64_t size, int lanes) {
  const int64_t rows = size / kIlp;
  const int64_t power = std::max<int64_t>(4, ceil_log2(rows) / kLevels);
  const int64_t step = int64_t(1) << power, mask = step - 1;
  Lanes acc[kLevels][kIlp] = {};
  auto add = [lanes](Lanes& a, const float* v) {
    for (int l = 0; l < lanes; ++l) a[l] += v[l];
  };
  int64_t i = 0;
  for (; i + step <= rows;) {
    for (int64_t j = 0; j < step; ++j, ++i)
      for (int c = 0; c < kIlp; ++c) add(acc[0][c], x + (i * kIlp + c) * lanes);
    for (int j = 1; j < kLevels; ++j) {
      for (int c = 0; c < kIlp; ++c) {
        add(acc[j][c], acc[j - 1][c].data());
        acc[j - 1][c] = Lanes{};
      }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < rows; ++i)
    for (int c = 0; c < kIlp; ++c) add(acc[0][c], x + (i * kIlp + c) * lanes);
  for (int j = 1; j < kLevels; ++j)
    for (int c = 0; c < kIlp; ++c) add(acc[0][c], acc[j][c].data());
  for (int64_t v = rows * kIlp; v < size; ++v) add(acc[0][0], x + v * lanes);
  for (int c = 1; c < kIlp; ++c) add(acc[0][0], acc[0][c].data());
  return acc[0][0];
}

void add_into(float* h, const float* d, int64_t n) {
  for (int64_t i = 0; i < n; ++i) h[i] = h[i] + d[i];
}

// One projection group: each part through its family's threaded driver, into its columns of g.y.
void run_group(const DecodeGroup& g, const float* x, int nthreads, uint32_t isa_mask, const ActInfo* act) {
  for (const DecodeLinear& p : g.parts) {
    float* y = g.y + p.col0;
    switch (p.kind) {
      case DecodeLinear::kQ8:
        q8_linear(static_cast<KernelKind>(p.mode), x, false, 1, p.k, p.q8, p.bias, y, g.n, nthreads, isa_mask,
                  p.act);
        break;
      case DecodeLinear::kQ4:
        q4_linear(static_cast<Q4KernelKind>(p.mode), x, false, 1, p.k, p.in_mul, p.q4, p.bias, y, g.n, nthreads,
                  isa_mask);
        break;
      case DecodeLinear::kF32: {
        // The lowrank family's fp32 GEMV micro-kernel over blocks of output rows.
        const LrKernelInfo* ki = select_lowrank_kernel(1, isa_mask);
        const int64_t block = std::max<int64_t>(ki->nr, (p.n + 8 * nthreads - 1) / (8 * nthreads) / ki->nr * ki->nr);
        const int64_t tasks = (p.n + block - 1) / block;
        auto task = [&](int64_t t) {
          const int64_t n0 = t * block, n1 = std::min(p.n, n0 + block);
          for (int64_t j = n0; j < n1; j += ki->nr) {
            const int nr = int(std::min<int64_t>(ki->nr, n1 - j));
            ki->fn(1, nr, p.k, x, p.k, p.w + j * p.k, p.k, p.bias ? p.bias + j : nullptr, y + j, 1);
          }
        };
        parallel_for(tasks, nthreads, task);
        break;
      }
    }
  }
  if (g.post_act != 0) act->fn(g.post_act, g.y, g.post_cols);
}

// q and k heads in place: out = x * cos + flip_halves(x) * sin (each product rounded, then the sum).
void rope(float* qk, int64_t heads, int64_t hd, const float* cos, const float* sin, float* tmp) {
  const int64_t h2 = hd / 2;
  for (int64_t h = 0; h < heads; ++h) {
    float* x = qk + h * hd;
    std::memcpy(tmp, x, hd * sizeof(float));
    for (int64_t i = 0; i < hd; ++i) {
      const float a = tmp[i] * cos[i];
      const float b = tmp[i < h2 ? i + h2 : i - h2] * sin[i];
      x[i] = a + b;
    }
  }
}

int64_t argmax_first(const float* y, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(y[i])) return i;
    if (y[i] > y[best]) best = i;
  }
  return best;
}

}  // namespace

void torch_silu_row(const TorchSiluInfo* k, float* y, int64_t n, int64_t block) {
  const int64_t nv = block > 0 ? n - n % block : n;
  k->fn(y, nv);
  for (int64_t i = nv; i < n; ++i) y[i] = y[i] / (1.0f + std::exp(-y[i]));
}

float torch_order_sum(const float* x, int64_t n, int lanes) {
  if (n < lanes || lanes <= 1) return row_sum(x, n, 1)[0];  // torch's scalar inner sum
  const int64_t vecs = n / lanes;
  const Lanes v = row_sum(x, vecs, lanes);
  float acc = 0;
  for (int64_t k = vecs * lanes; k < n; ++k) acc += x[k];
  for (int l = 0; l < lanes; ++l) acc += v[l];
  return acc;
}

void rms_norm_torch_order(const float* x, const float* w, float eps, int64_t n, int lanes, float* y) {
  // y doubles as the x * x buffer: torch materializes x * x before the sum.
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * x[i];
  const float mean = torch_order_sum(y, n, lanes) / static_cast<float>(n);
  const float r = 1.0f / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) y[i] = w[i] * (x[i] * r);
}

int64_t decode_step(const DecodeModel& m, int64_t token, int64_t pos, bool argmax, int nthreads,
                    uint32_t isa_mask) {
  nthreads = std::max(1, nthreads);
  const ActInfo* act = select_act(isa_mask);
  const TorchSiluInfo* tsilu = select_torch_silu(isa_mask);
  const int64_t H = m.hidden, hd = m.hd, g = m.heads / m.kv;
  const int64_t nq = m.heads * hd, nkv = m.kv * hd;
  switch (m.embed_kind) {
    case 1:
      std::memcpy(m.h, m.embed_f32 + token * H, H * sizeof(float));
      break;
    case 2:
      embed_gather_q8(m.embed_q8, &token, 1, m.h, H, 1);
      break;
    case 3:
      embed_gather_q4(m.embed_q4, &token, 1, m.h, H, 1);
      break;
    default:
      break;
  }
  const float* cos = m.cos + pos * hd;
  const float* sin = m.sin + pos * hd;
  std::vector<float> tmp(hd);
  AttnProblem ap{};
  ap.b = 1, ap.hq = m.kv, ap.hkv = m.kv, ap.lq = g, ap.lk = pos + 1, ap.d = hd, ap.dv = hd;
  ap.q_sb = nq + 2 * nkv, ap.q_sh = g * hd, ap.q_sl = hd;
  ap.k_sb = ap.v_sb = 2 * m.max_len * nkv, ap.k_sh = ap.v_sh = m.max_len * hd, ap.k_sl = ap.v_sl = hd;
  ap.o_sb = nq, ap.o_sh = g * hd, ap.o_sl = hd;
  ap.mask_kind = 0, ap.mask = nullptr, ap.causal = false;
  for (const DecodeLayer& L : m.layers) {
    rms_norm_torch_order(m.h, L.norm1, L.eps1, H, m.torch_lanes, m.xn);
    run_group(L.qkv, m.xn, nthreads, isa_mask, act);
    float* q = L.qkv.y;
    rope(q, m.heads + m.kv, hd, cos, sin, tmp.data());
    for (int64_t j = 0; j < 2 * m.kv; ++j)  // keys then values of each kv head into its run of positions
      std::memcpy(L.cache + (j * m.max_len + pos) * hd, q + nq + j * hd, hd * sizeof(float));
    ap.q = q, ap.k = L.cache, ap.v = L.cache + m.max_len * nkv, ap.o = m.attn, ap.scale = L.scaling;
    attention_f32(ap, nthreads, isa_mask);
    run_group(L.o, m.attn, nthreads, isa_mask, act);
    add_into(m.h, L.o.y, H);
    rms_norm_torch_order(m.h, L.norm2, L.eps2, H, m.torch_lanes, m.xn);
    run_group(L.gu, m.xn, nthreads, isa_mask, act);
    float* gate = L.gu.y;
    const float* up = L.gu.y + m.inter;
    if (L.mlp_act != 0) act->fn(L.mlp_act, gate, m.inter);
    if (L.mlp_torch_silu) torch_silu_row(tsilu, gate, m.inter, m.silu_block);
    for (int64_t i = 0; i < m.inter; ++i) m.mlp[i] = gate[i] * up[i];
    run_group(L.down, m.mlp, nthreads, isa_mask, act);
    add_into(m.h, L.down.y, H);
  }
  rms_norm_torch_order(m.h, m.final_norm, m.final_eps, H, m.torch_lanes, m.xn);
  run_group(m.head, m.xn, nthreads, isa_mask, act);
  return argmax ? argmax_first(m.head.y, m.vocab) : -1;
}

}  // namespace slimnn
