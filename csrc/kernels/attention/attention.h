// attention: fused scaled-dot-product attention on fp32, out = softmax(q k^T * scale + mask) v, per (batch, head).
//
// Why a kernel of our own: torch's CPU SDPA (flash kernel) spends ~2 ms per call on BERT-sized problems
// (32 sequences x 12 heads x 15 tokens x 32 dims: 11 MFLOP) in setup and blocking tuned for long sequences.
// Here one parallel region walks (batch, head, query block) tasks; each task streams the keys in blocks of
// kAttnBlockK with an online softmax (running max and sum per query row, output rescaled when the max grows),
// so memory per worker is bounded whatever Lk is, and a short sequence is one key block: one pass, no rescale.
//
// Semantics (those of torch.nn.functional.scaled_dot_product_attention on the CPU, torch 2.13):
//  - masks: none, boolean (nonzero byte = attend), or additive fp32; both broadcast by strides (0 = broadcast).
//  - causal (top-left aligned, as torch's is_causal): query row i attends key j iff j <= i. It may be combined
//    with a mask (both apply; torch refuses the combination, we do not).
//  - a row whose every score is -inf (all keys masked) gives zeros, as torch's CPU kernel does. Lk == 0 gives zeros.
//    An additive mask of finite large negatives (HF's finfo.min) is just added: a fully "masked" row is then
//    (nearly) uniform, as in torch.
//  - NaN in q/k/v/mask propagates to the rows it touches.
#pragma once
#include <cstdint>

namespace slimnn {

constexpr int64_t kAttnBlockK = 128;  // keys per online-softmax block (a multiple of every vector width)
// Row stride (floats) of the packed K^T block: a block plus 16 floats, so its d rows (576 bytes apart, not 512)
// spread over every L1 set; at 512 bytes a 64-row block fell into 8 of the 64 sets and the score loop's loads
// missed L1 (measured on Zen 3). A multiple of 16: rows stay 64-byte aligned for every vector width.
constexpr int64_t kAttnKtStride = kAttnBlockK + 16;
constexpr int kAttnMaxRows = 8;       // query rows a tile kernel processes together, at most

// One tile: mq consecutive query rows of one (batch, head) against all lk keys of its kv head.
// Row r of q is q + r * ldq (d floats), key j is k + j * ldk (d floats), value j is v + j * ldv (dv floats);
// output row r is written to o + r * ldo (dv floats). Every inner stride is 1. Nothing is read past the
// last element of a row (tails are masked).
struct AttnTile {
  const float* q;
  const float* k;
  const float* v;
  float* o;
  int64_t ldq, ldk, ldv, ldo;
  int64_t mq, lk, d, dv;
  float scale;
  int mask_kind;     // 0 none, 1 bool (uint8 bytes, nonzero = keep), 2 additive fp32
  const void* mask;  // row r at mask + r * ldm elements, column j at + j; null when mask_kind == 0
  int64_t ldm;       // may be 0 (one mask row for every query row)
  int64_t causal;    // < 0: not causal; else row r attends keys j <= causal + r
  float* work;       // attn_work_floats(mq, d, dv) floats, 64-byte aligned, owned by the calling worker
};

// Floats of work space one tile needs.
int64_t attn_work_floats(int64_t mq, int64_t d, int64_t dv);

// The tile kernel: writes o rows [0, mq) exactly (lk >= 1). Accumulation order: scores are sums over d in
// order (one FMA chain per key), the softmax sum and the output are accumulated over keys in order, so each
// output row does not depend on how rows are grouped into tiles (thread-count invariant).
using AttnUkernel = void (*)(const AttnTile& t);
// y[i] = exp(x[i]) for i < n with the kernel's own polynomial (what the softmax uses; exposed for tests).
using AttnExpFn = void (*)(const float* x, float* y, int64_t n);

struct AttnKernelInfo {
  uint32_t isa;      // single ISA bit
  const char* name;  // attention_f32_<variant>__<isa>
  int width;         // fp32 lanes per vector
  AttnUkernel fn;
  AttnExpFn exp;
};

// All kernels of the build, best first (kernels.inc).
const AttnKernelInfo* attention_kernel_table(int* count);
// First kernel whose ISA is in the mask.
const AttnKernelInfo* select_attention_kernel(uint32_t isa_mask);
// The kernel named `name`, or nullptr.
const AttnKernelInfo* attention_kernel_by_name(const char* name);

// A whole problem: q [b][hq][lq][d], k [b][hkv][lk][d], v [b][hkv][lk][dv], o [b][hq][lq][dv], mask
// broadcast to [b][hq][lq][lk]; each given by element strides of its first three dims (last dim contiguous).
// hq % hkv == 0: query head h reads kv head h / (hq / hkv) (grouped-query attention).
struct AttnProblem {
  int64_t b, hq, hkv, lq, lk, d, dv;
  const float* q;
  int64_t q_sb, q_sh, q_sl;
  const float* k;
  int64_t k_sb, k_sh, k_sl;
  const float* v;
  int64_t v_sb, v_sh, v_sl;
  float* o;
  int64_t o_sb, o_sh, o_sl;
  int mask_kind;
  const void* mask;
  int64_t m_sb, m_sh, m_sl;
  bool causal;
  float scale;
};

// Runs the problem on `nthreads` threads (tasks: (batch, head, query block), query blocks sized so that there
// are several tasks per thread). `kernel` null: select_attention_kernel(isa_mask). Returns the kernel used.
const AttnKernelInfo* attention_f32(const AttnProblem& p, int nthreads, uint32_t isa_mask,
                                    const AttnKernelInfo* kernel = nullptr);

}  // namespace slimnn
