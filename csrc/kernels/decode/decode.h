// decode: one token through a Llama-architecture decoder (Llama, Mistral, Qwen2) in one call.
//
// Why a C++ step: the Python decode loop (integrations/decode.py) calls the same kernels, but between them
// runs ~25 small torch ops per layer (RMSNorm, RoPE, residual adds, the SiLU product), ~1.8 ms per token
// of a ~9 ms SmolLM2-135M step on Zen 4, and serial, so a second thread barely helps. Here the whole
// forward of one position is one call: per layer
//   xn = rmsnorm(h) ; qkv = xn Wqkv^T (+b) ; rope(q, k) ; cache[pos] = (k, v) ; a = attention(q, cache[:pos+1])
//   h += a Wo^T ; xn = rmsnorm(h) ; gu = xn Wgu^T ; m = act(gate) * up ; h += m Wdown^T
// then logits = rmsnorm(h) Whead^T and optionally the greedy argmax. Every projection runs through the
// existing threaded drivers (q8_linear, q4_linear: whatever kind the layer was compressed to; fp32 layers
// through the lowrank family's fp32 GEMV micro-kernel), attention through attention_f32, activations through
// the act kernels; nothing here is a GEMM of its own. Each driver call is one parallel region on `nthreads`;
// the elementwise work between them (a few thousand floats) runs on the calling thread.
//
// Bits: the projections, attention and activations are the very calls the Python step makes (same kernels,
// same arguments, same order). The glue reproduces the Python step's torch float32 ops operation for
// operation: RoPE as (x * cos) + (flip_halves(x) * sin_signed) with each product rounded (the family is
// built with -ffp-contract=off), residual adds, the gate * up product, and RMSNorm as
// w * (x * (1 / sqrt(sum(x * x) / n + eps))) with the sum in torch's own order (its CPU sum kernel: vectors
// of `torch_lanes` floats, 4 interleaved accumulators, a 4-level cascade of 16-step blocks; see
// torch_order_sum in decode.cc). An unfused nn.SiLU (int4 and float models keep torch's) is torch's own
// float32 SiLU, x / (1 + exp(-x)): its vectorized exp (SLEEF's expf, torch_silu_f32 kernels below) on the
// whole blocks of `silu_block` floats its loop takes, std::exp on the tail, as torch's CPU kernel does. Other
// unfused activations (GELU) use the act kernels: those models agree with the Python step to rounding only.
#pragma once
#include <cstdint>
#include <vector>

#include "formats/q4.h"
#include "formats/q8.h"

namespace slimnn {

// One projection writing n columns of its group's output row from column col0 on.
struct DecodeLinear {
  enum Kind : int { kQ8 = 0, kQ4 = 1, kF32 = 2 };
  Kind kind = kQ8;
  int mode = 0;               // kQ8: a KernelKind (kQ8Dyn / kQ8Wo); kQ4: a Q4KernelKind (kQ4Dyn / kQ4Wo)
  Q8View q8{};
  Q4View q4{};
  const float* w = nullptr;   // kF32: n x k row-major (nn.Linear's weight)
  const float* bias = nullptr;
  const float* in_mul = nullptr;  // kQ4: AWQ input factors or null
  int act = 0;                // kQ8: epilogue activation (an Activation)
  int64_t n = 0, k = 0, col0 = 0;
};

// Projections reading one input, writing one output row y (n columns); post_act (an Activation) is then
// applied to its first post_cols columns (a fused gate/up whose gate carried an epilogue activation).
struct DecodeGroup {
  std::vector<DecodeLinear> parts;
  float* y = nullptr;
  int64_t n = 0, k = 0;
  int post_act = 0;
  int64_t post_cols = 0;
};

struct DecodeLayer {
  const float* norm1 = nullptr;  // input_layernorm weight [hidden]
  const float* norm2 = nullptr;  // post_attention_layernorm weight [hidden]
  float eps1 = 0, eps2 = 0;
  DecodeGroup qkv, o, gu, down;  // qkv: [q heads | k heads | v heads] x hd; gu: [gate | up] x inter
  int mlp_act = 0;               // applied to the gate before gate * up (0: already applied, or none)
  bool mlp_torch_silu = false;   // the gate's activation is torch's SiLU (then mlp_act is 0)
  float* cache = nullptr;        // [2][kv][max_len][hd]: keys, then values, each kv head's positions contiguous
  float scaling = 1;             // attention scale
};

struct DecodeModel {
  int64_t hidden = 0, heads = 0, kv = 0, hd = 0, inter = 0, vocab = 0, max_len = 0;
  int torch_lanes = 8;           // float lanes of torch's CPU sum kernel (8 on x86-64: dispatched at AVX2)
  int64_t silu_block = 32;       // floats per step of torch's vectorized elementwise loop (2 vectors)
  std::vector<DecodeLayer> layers;
  const float* final_norm = nullptr;
  float final_eps = 0;
  DecodeGroup head;              // lm_head: y is the logits row [vocab]
  const float* cos = nullptr;    // [max_len][hd]
  const float* sin = nullptr;    // [max_len][hd], first half negated (rotate_half folded in)
  // Embedding: kind 0 none (the caller writes h), 1 fp32 table [vocab][hidden], 2 q8 blob, 3 q4 blob.
  int embed_kind = 0;
  const float* embed_f32 = nullptr;
  Q8View embed_q8{};
  Q4View embed_q4{};
  // Work rows (the caller owns them): h and xn [hidden], attn [heads * hd], mlp [inter].
  float* h = nullptr;
  float* xn = nullptr;
  float* attn = nullptr;
  float* mlp = nullptr;
};

// Runs position `pos` (0 <= pos < max_len; the cache holds positions [0, pos)) for `token` (embedded into h
// unless embed_kind == 0, when h already holds it), writing the logits into head.y and this position's keys
// and values into each layer's cache. Returns the greedy next token (torch.argmax's choice: the first
// maximum, or the first NaN) when `argmax`, else -1. The caller validated the model (bindings).
int64_t decode_step(const DecodeModel& m, int64_t token, int64_t pos, bool argmax, int nthreads,
                    uint32_t isa_mask);

// torch's float32 SiLU body in place on y[0, n): y = y / (1 + texp(-y)), texp the SLEEF-style exp of
// torch's Vectorized<float> (torch_silu.inc). Every kernel gives the same bits (the portable one with std::fma).
using TorchSiluFn = void (*)(float* y, int64_t n);
struct TorchSiluInfo {
  uint32_t isa;  // single ISA bit
  const char* name;
  TorchSiluFn fn;
};
const TorchSiluInfo* torch_silu_table(int* count);
const TorchSiluInfo* select_torch_silu(uint32_t isa_mask);
// torch's SiLU on a row of n floats: fn on the first n - n % block, y / (1 + std::exp(-y)) on the rest.
void torch_silu_row(const TorchSiluInfo* k, float* y, int64_t n, int64_t block);

// The pieces, exposed for tests. torch_order_sum: sum of x[0, n) in torch's CPU sum-kernel order for
// vectors of `lanes` floats. rms_norm_torch_order: y = w * (x * (1 / sqrt(sum(x * x) / n + eps))).
float torch_order_sum(const float* x, int64_t n, int lanes);
void rms_norm_torch_order(const float* x, const float* w, float eps, int64_t n, int lanes, float* y);

}  // namespace slimnn
