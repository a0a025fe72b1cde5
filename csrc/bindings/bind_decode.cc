// Bindings of the decode step (kernels/decode). _C.DecodePlan is built piece by piece from Python
// (integrations/decode.py: the Decoder owns every tensor the plan points at, and keeps them alive), checked
// as a whole by finalize(), then run one token per step() call with the GIL released once.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "kernels/act/act.h"
#include "kernels/decode/decode.h"
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"

namespace py = pybind11;

namespace slimnn {
namespace {

struct Plan {
  DecodeModel m;
  bool ready = false;
  std::atomic<bool> busy{false};

  [[noreturn]] static void fail(const std::string& what) { throw py::value_error("DecodePlan: " + what); }

  DecodeLayer& layer(int64_t i) {
    if (i < 0 || i >= int64_t(m.layers.size())) fail("layer " + std::to_string(i) + " out of range");
    return m.layers[size_t(i)];
  }
  // slot "qkv", "o", "gu", "down" of a layer, or "head" (layer ignored).
  DecodeGroup& group(int64_t i, const std::string& slot) {
    ready = false;
    if (slot == "head") return m.head;
    DecodeLayer& L = layer(i);
    if (slot == "qkv") return L.qkv;
    if (slot == "o") return L.o;
    if (slot == "gu") return L.gu;
    if (slot == "down") return L.down;
    fail("unknown slot '" + slot + "' (qkv, o, gu, down or head)");
  }
  static void need_ptr(uintptr_t p, const char* what) {
    if (p == 0) fail(std::string(what) + " is a null pointer");
  }
  // Appends projection d (its kind, view and sizes set) at column col0 of the slot's group.
  void add(int64_t layer, const std::string& slot, DecodeLinear d, int64_t col0, uintptr_t bias) {
    DecodeGroup& g = group(layer, slot);
    if (col0 < 0) fail("col0 < 0");
    d.col0 = col0;
    d.bias = as_ptr<const float>(bias);
    g.parts.push_back(d);
  }

  // Sizes of every group against the model's dimensions; the parts of each group cover its columns once.
  void check_group(const DecodeGroup& g, int64_t n, int64_t k, const std::string& name) const {
    if (g.y == nullptr) fail(name + ": no output row");
    if (g.n != n || g.k != k)
      fail(name + " is " + std::to_string(g.n) + " x " + std::to_string(g.k) + ", expected " + std::to_string(n) +
           " x " + std::to_string(k));
    if (g.parts.empty()) fail(name + ": no projection");
    int64_t next = 0;
    std::vector<const DecodeLinear*> parts;
    for (const auto& p : g.parts) parts.push_back(&p);
    std::sort(parts.begin(), parts.end(), [](auto a, auto b) { return a->col0 < b->col0; });
    for (const DecodeLinear* p : parts) {
      if (p->k != k) fail(name + ": a projection reads " + std::to_string(p->k) + " inputs, not " + std::to_string(k));
      if (p->col0 != next) fail(name + ": projections do not tile the output columns");
      next += p->n;
    }
    if (next != n) fail(name + ": projections write " + std::to_string(next) + " of " + std::to_string(n) + " columns");
    if (g.post_act < 0 || g.post_act >= kNumActivations) fail(name + ": unknown activation code");
    if (g.post_cols < 0 || g.post_cols > n) fail(name + ": post_cols out of range");
  }

  void finalize() {
    const DecodeModel& d = m;
    for (size_t i = 0; i < d.layers.size(); ++i) {
      const DecodeLayer& L = d.layers[i];
      const std::string p = "layer " + std::to_string(i) + " ";
      if (!L.norm1 || !L.norm2 || !L.cache) fail(p + "not set (set_layer)");
      check_group(L.qkv, (d.heads + 2 * d.kv) * d.hd, d.hidden, p + "qkv");
      check_group(L.o, d.hidden, d.heads * d.hd, p + "o");
      check_group(L.gu, 2 * d.inter, d.hidden, p + "gu");
      check_group(L.down, d.hidden, d.inter, p + "down");
    }
    if (!d.final_norm) fail("final norm not set");
    check_group(d.head, d.vocab, d.hidden, "head");
    ready = true;
  }
};

}  // namespace

void bind_decode(py::module_& m) {
  py::class_<Plan>(m, "DecodePlan",
                   "One token of a Llama-architecture decoder in one call (kernels/decode). Holds raw pointers: "
                   "the caller keeps every tensor alive.")
      .def(py::init([](int64_t hidden, int64_t heads, int64_t kv, int64_t hd, int64_t inter, int64_t vocab,
                       int64_t max_len, int64_t n_layers, int torch_lanes, int64_t silu_block, uintptr_t cos, uintptr_t sin, uintptr_t h,
                       uintptr_t xn, uintptr_t attn, uintptr_t mlp) {
             if (hidden < 1 || heads < 1 || kv < 1 || hd < 2 || hd % 2 || inter < 1 || vocab < 1 || max_len < 1 ||
                 n_layers < 0)
               Plan::fail("dimensions must be positive (head_dim even)");
             if (heads % kv) Plan::fail("query heads must be a multiple of key/value heads");
             if (torch_lanes != 1 && torch_lanes != 4 && torch_lanes != 8 && torch_lanes != 16)
               Plan::fail("torch_lanes must be 1, 4, 8 or 16");
             if (silu_block < 0) Plan::fail("silu_block must be >= 0");
             for (auto [p, w] : {std::pair{cos, "cos"}, {sin, "sin"}, {h, "h"}, {xn, "xn"}, {attn, "attn"}, {mlp, "mlp"}})
               Plan::need_ptr(p, w);
             auto* p = new Plan();
             DecodeModel& d = p->m;
             d.hidden = hidden, d.heads = heads, d.kv = kv, d.hd = hd, d.inter = inter, d.vocab = vocab;
             d.max_len = max_len, d.torch_lanes = torch_lanes, d.silu_block = silu_block;
             d.layers.resize(size_t(n_layers));
             d.cos = as_ptr<const float>(cos), d.sin = as_ptr<const float>(sin);
             d.h = as_ptr<float>(h), d.xn = as_ptr<float>(xn), d.attn = as_ptr<float>(attn), d.mlp = as_ptr<float>(mlp);
             return p;
           }),
           py::arg("hidden"), py::arg("heads"), py::arg("kv"), py::arg("head_dim"), py::arg("inter"), py::arg("vocab"),
           py::arg("max_len"), py::arg("n_layers"), py::arg("torch_lanes"), py::arg("silu_block"), py::arg("cos"), py::arg("sin"),
           py::arg("h"), py::arg("xn"), py::arg("attn"), py::arg("mlp"))
      .def(
          "set_layer",
          [](Plan& p, int64_t i, uintptr_t norm1, double eps1, uintptr_t norm2, double eps2, uintptr_t cache,
             double scaling, int mlp_act, bool torch_silu) {
            DecodeLayer& L = p.layer(i);
            Plan::need_ptr(norm1, "norm1"), Plan::need_ptr(norm2, "norm2"), Plan::need_ptr(cache, "cache");
            if (mlp_act < 0 || mlp_act >= kNumActivations) Plan::fail("unknown activation code");
            L.norm1 = as_ptr<const float>(norm1), L.norm2 = as_ptr<const float>(norm2);
            L.eps1 = float(eps1), L.eps2 = float(eps2), L.cache = as_ptr<float>(cache);
            if (torch_silu && mlp_act != 0) Plan::fail("torch_silu and mlp_act are exclusive");
            L.scaling = float(scaling), L.mlp_act = mlp_act, L.mlp_torch_silu = torch_silu;
            p.ready = false;
          },
          py::arg("layer"), py::arg("norm1"), py::arg("eps1"), py::arg("norm2"), py::arg("eps2"), py::arg("cache"),
          py::arg("scaling"), py::arg("mlp_act"), py::arg("torch_silu") = false)
      .def(
          "set_final_norm",
          [](Plan& p, uintptr_t w, double eps) {
            Plan::need_ptr(w, "final norm");
            p.m.final_norm = as_ptr<const float>(w), p.m.final_eps = float(eps);
          },
          py::arg("weight"), py::arg("eps"))
      .def(
          "set_group",
          [](Plan& p, int64_t layer, const std::string& slot, uintptr_t y, int64_t n, int64_t k, int post_act,
             int64_t post_cols) {
            DecodeGroup& g = p.group(layer, slot);
            Plan::need_ptr(y, "group output");
            g.y = as_ptr<float>(y), g.n = n, g.k = k, g.post_act = post_act, g.post_cols = post_cols;
          },
          py::arg("layer"), py::arg("slot"), py::arg("y"), py::arg("n"), py::arg("k"), py::arg("post_act") = 0,
          py::arg("post_cols") = 0)
      .def(
          "add_q8",
          [](Plan& p, int64_t layer, const std::string& slot, const std::string& kind, uintptr_t blob, size_t size,
             uintptr_t bias, int64_t col0, int act) {
            if (act < 0 || act >= kNumActivations) Plan::fail("unknown activation code");
            DecodeLinear d;
            d.kind = DecodeLinear::kQ8, d.mode = static_cast<int>(q8_kind_from(kind)), d.act = act;
            d.q8 = q8_view(as_ptr<const uint8_t>(blob), size, false);
            d.n = d.q8.n, d.k = d.q8.k;
            p.add(layer, slot, d, col0, bias);
          },
          py::arg("layer"), py::arg("slot"), py::arg("kind"), py::arg("blob"), py::arg("size"), py::arg("bias"),
          py::arg("col0"), py::arg("act"))
      .def(
          "add_q4",
          [](Plan& p, int64_t layer, const std::string& slot, const std::string& kind, uintptr_t blob, size_t size,
             uintptr_t bias, uintptr_t in_mul, int64_t col0) {
            DecodeLinear d;
            d.kind = DecodeLinear::kQ4;
            if (kind == "q4_dynamic")
              d.mode = static_cast<int>(Q4KernelKind::kQ4Dyn);
            else if (kind == "q4_weight_only")
              d.mode = static_cast<int>(Q4KernelKind::kQ4Wo);
            else
              Plan::fail("unknown q4 kind '" + kind + "' (q4_dynamic or q4_weight_only)");
            d.q4 = q4_view(as_ptr<const uint8_t>(blob), size, false);
            d.in_mul = as_ptr<const float>(in_mul);
            d.n = d.q4.n, d.k = d.q4.k;
            p.add(layer, slot, d, col0, bias);
          },
          py::arg("layer"), py::arg("slot"), py::arg("kind"), py::arg("blob"), py::arg("size"), py::arg("bias"),
          py::arg("in_mul"), py::arg("col0"))
      .def(
          "add_f32",
          [](Plan& p, int64_t layer, const std::string& slot, uintptr_t w, int64_t n, int64_t k, uintptr_t bias,
             int64_t col0) {
            Plan::need_ptr(w, "weight");
            if (n < 1 || k < 1) Plan::fail("fp32 weight must be at least 1 x 1");
            DecodeLinear d;
            d.kind = DecodeLinear::kF32, d.w = as_ptr<const float>(w), d.n = n, d.k = k;
            p.add(layer, slot, d, col0, bias);
          },
          py::arg("layer"), py::arg("slot"), py::arg("weight"), py::arg("n"), py::arg("k"), py::arg("bias"),
          py::arg("col0"))
      .def(
          "set_embedding",
          [](Plan& p, const std::string& kind, uintptr_t ptr, size_t size) {
            DecodeModel& d = p.m;
            p.ready = false;
            if (kind == "none") {
              d.embed_kind = 0;
              return;
            }
            Plan::need_ptr(ptr, "embedding");
            if (kind == "f32") {
              if (size != size_t(d.vocab * d.hidden) * sizeof(float)) Plan::fail("fp32 embedding is not vocab x hidden");
              d.embed_kind = 1, d.embed_f32 = as_ptr<const float>(ptr);
            } else if (kind == "q8" || kind == "q4") {
              int64_t n, k;
              if (kind == "q8") {
                d.embed_q8 = q8_view(as_ptr<const uint8_t>(ptr), size, false);
                n = d.embed_q8.n, k = d.embed_q8.k, d.embed_kind = 2;
              } else {
                d.embed_q4 = q4_view(as_ptr<const uint8_t>(ptr), size, false);
                n = d.embed_q4.n, k = d.embed_q4.k, d.embed_kind = 3;
              }
              if (n != d.vocab || k != d.hidden) {
                d.embed_kind = 0;
                Plan::fail("embedding blob is not vocab x hidden");
              }
            } else {
              Plan::fail("unknown embedding kind '" + kind + "' (none, f32, q8 or q4)");
            }
          },
          py::arg("kind"), py::arg("ptr") = 0, py::arg("size") = 0)
      .def("finalize", &Plan::finalize, "Checks every layer and group against the dimensions (ValueError).")
      .def(
          "step",
          [](Plan& p, int64_t token, int64_t pos, bool argmax, int nthreads) {
            if (!p.ready) Plan::fail("step before finalize()");
            if (pos < 0 || pos >= p.m.max_len)
              Plan::fail("position " + std::to_string(pos) + " outside the cache [0, " + std::to_string(p.m.max_len) + ")");
            if (p.m.embed_kind != 0 && (token < 0 || token >= p.m.vocab))
              Plan::fail("token " + std::to_string(token) + " outside [0, " + std::to_string(p.m.vocab) + ")");
            if (nthreads < 1) Plan::fail("nthreads must be >= 1");
            bool expected = false;
            if (!p.busy.compare_exchange_strong(expected, true))
              Plan::fail("step already running on this plan in another thread (one sequence per Decoder)");
            struct Release {
              std::atomic<bool>& b;
              ~Release() { b.store(false); }
            } release{p.busy};
            py::gil_scoped_release nogil;
            return decode_step(p.m, token, pos, argmax, nthreads, current_isa_mask());
          },
          py::arg("token"), py::arg("pos"), py::arg("argmax"), py::arg("nthreads"),
          "Runs one position (decode.h); returns the greedy next token when argmax, else -1.");
  m.def(
      "torch_order_rms_norm",
      [](uintptr_t x, uintptr_t w, double eps, int64_t n, int lanes, uintptr_t y) {
        if (n < 1) throw py::value_error("torch_order_rms_norm: n must be >= 1");
        if (lanes != 1 && lanes != 4 && lanes != 8 && lanes != 16)
          throw py::value_error("torch_order_rms_norm: lanes must be 1, 4, 8 or 16");
        rms_norm_torch_order(as_ptr<const float>(x), as_ptr<const float>(w), float(eps), n, lanes, as_ptr<float>(y));
      },
      py::arg("x"), py::arg("w"), py::arg("eps"), py::arg("n"), py::arg("lanes"), py::arg("y"),
      "Test hook: the decode step's RMSNorm, w * (x * rsqrt(mean(x * x) + eps)) summed in torch's order.");
  def_kernel_table(
      m, "torch_silu_kernels", torch_silu_table, [](const TorchSiluInfo& k) { return kernel_row(k.name, k.isa); },
      false);
  m.def(
      "torch_silu",
      [](uintptr_t y, int64_t n, int64_t block, const std::string& kernel) {
        if (n < 0 || block < 0) throw py::value_error("torch_silu: n and block must be >= 0");
        int cnt = 0;
        const TorchSiluInfo* t = torch_silu_table(&cnt);
        const TorchSiluInfo* k = kernel.empty() ? select_torch_silu(current_isa_mask())
                                                : named_kernel(t, cnt, kernel, "torch_silu ");
        py::gil_scoped_release nogil;
        torch_silu_row(k, as_ptr<float>(y), n, block);
      },
      py::arg("y"), py::arg("n"), py::arg("block"), py::arg("kernel") = "",
      "Test hook: torch's float32 SiLU in place on n floats (the decode step's), `block` floats per vector step.");
}

}  // namespace slimnn
