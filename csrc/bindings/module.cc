// slimnn._C: the private extension. Tensors cross as (data pointer, sizes) integers; the Python layer
// (slimnn/ops.py) owns every dtype/shape/device/contiguity check and the lifetime of the buffers, and this
// layer re-checks what the C++ side relies on for memory safety (blob headers). Long calls release the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "common/cache.h"
#include "common/isa.h"
#include "common/threadpool.h"
#include "formats/q8.h"
#include "kernels/act/act.h"
#include "kernels/qgemm/amx_emu.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/wogemm/wogemm.h"
#include "bindings/bindings.h"

namespace py = pybind11;
using namespace slimnn;

namespace {

const char* kind_name(KernelKind k) {
  return k == KernelKind::kQ8Dyn ? "q8_dynamic" : k == KernelKind::kQ8Wo ? "q8_weight_only" : "q8_weight_only_panel";
}

// A kernel of the table or, for the test hooks, of the emulated (test-only) table.
const KernelInfo* kernel_by_name(const std::string& name) {
  int n = 0;
  const KernelInfo* e = emulated_kernel_table(&n);
  for (int i = 0; i < n; ++i)
    if (name == e[i].name) return &e[i];
  const KernelInfo* t = kernel_table(&n);
  return named_kernel(t, n, name, "");
}

py::dict q8_kernel_row(const KernelInfo& k) {
  py::dict d = kernel_row(k.name, k.isa, kind_name(k.kind), k.mr, k.np * 16, k.gemv);
  // the selector picks it only from this many rows on (AMX: the crossover); -1: opt-in and off (AMX-BF16)
  const int64_t min_m = kernel_min_rows(k);
  d["min_m"] = min_m == kWoAmxBf16Off ? int64_t{-1} : min_m;
  return d;
}

py::tuple q8_header(uintptr_t blob, size_t size, bool full_check) {
  const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, full_check);
  return py::make_tuple(v.n, v.k, v.group_size, v.n_groups, v.np, v.kp);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "slimnn private extension; use the slimnn package instead.";

  // --- ISA ---
  m.def("isa_names", [] {
    std::vector<std::string> v;
    for (int i = 0; i < kNumIsas; ++i) v.push_back(isa_name(1u << i));
    return v;
  });
  m.def("detected_isa_mask", &detected_isa_mask);
  m.def("built_isa_mask", &built_isa_mask);
  m.def("current_isa_mask", &current_isa_mask);
  m.def("isa_bit", [](const std::string& name) { return isa_from_name(name); }, py::arg("name"));
  m.def("force_isa", [](const std::string& name) {
    const uint32_t bit = name.empty() ? 0 : isa_from_name(name);
    if (!name.empty() && bit == 0) throw py::value_error("unknown ISA '" + name + "'");
    force_isa(bit);
  }, py::arg("name"));
  m.def("cache_sizes", [] {
    const CacheSizes& c = cache_sizes();
    py::dict d;
    d["l1d"] = c.l1d;
    d["l2"] = c.l2;
    d["l3"] = c.l3;
    d["source"] = c.source;
    return d;
  });
  m.def(
      "wo_panel_min_rows",
      [](int64_t value) {
        if (value >= 0) set_wo_panel_min_rows(value);
        return py::make_tuple(wo_panel_min_rows(false), wo_panel_min_rows(true));
      },
      py::arg("value") = -1,
      "Rows from which the weight-only ops use the dequantized-panel GEMM (kernels/wogemm). value > 0 sets it "
      "(tests, crossover benchmarks), 0 restores the measured ones, < 0 only reads. Returns the (q8, q4) values in effect.");
  m.def(
      "wo_amx_bf16_min_rows",
      [](int64_t value) {
        if (value >= 0) set_wo_amx_bf16_min_rows(value);
        const int64_t v = wo_amx_bf16_min_rows();
        return v == kWoAmxBf16Off ? int64_t{0} : v;
      },
      py::arg("value") = -1,
      "Rows from which the weight-only ops take the AMX-BF16 panels (bf16 weights and activations, fp32 sums) "
      "on a CPU with amx_bf16: value > 0 opts in from that M, 0 turns it off (the default; the environment's "
      "SLIMNN_WO_AMX_BF16=<rows> is read at the first use), < 0 only reads. Returns the value in effect (0: off).");
  m.def("cpu_id", [] {
    const CpuIdInfo i = cpu_id_info();
    py::dict d;
    d["vendor"] = i.vendor;
    d["brand"] = i.brand;
    d["amx_permission_requested"] = i.amx_permission_requested;
    d["amx_permission_granted"] = i.amx_permission_granted;
    d["features"] = i.features;
    return d;
  });
  m.def("pool_worker_count", &pool_worker_count);

  // --- kernel table ---
  def_kernel_table(m, "kernels", kernel_table, q8_kernel_row);
  def_emulated_table(m, "q8_emulated_kernels", emulated_kernel_table, q8_kernel_row);
  // Each further kernel family binds itself from its own bind_<family>.cc (bindings.cc calls them).
  bind_families(m);
  m.def(
      "select_kernel",
      [](const std::string& kind, int64_t m) { return std::string(select_linear_kernel(q8_kind_from(kind), m, current_isa_mask())->name); },
      py::arg("kind"), py::arg("m"));

  // --- q8 format ---
  m.def("q8_blob_bytes", &q8_blob_bytes, py::arg("n"), py::arg("k"), py::arg("group_size"));
  m.def(
      "q8_pack",
      [](uintptr_t q, uintptr_t scales, int64_t n, int64_t k, int64_t group_size, uintptr_t out, size_t out_size) {
        if (out_size != q8_blob_bytes(n, k, group_size)) throw py::value_error("q8_pack: output buffer has the wrong size");
        py::gil_scoped_release nogil;
        q8_pack(as_ptr<const int8_t>(q), as_ptr<const float>(scales), n, k, group_size, as_ptr<uint8_t>(out));
      },
      py::arg("q"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_size"), py::arg("out"),
      py::arg("out_size"));
  m.def(
      "q8_unpack",
      [](uintptr_t blob, size_t size, uintptr_t q, uintptr_t scales) {
        const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, false);
        py::gil_scoped_release nogil;
        q8_unpack(v, as_ptr<int8_t>(q), as_ptr<float>(scales));
      },
      py::arg("blob"), py::arg("size"), py::arg("q"), py::arg("scales"));
  m.def("q8_header", &q8_header, py::arg("blob"), py::arg("size"), py::arg("full_check"),
        "Validates a q8 blob and returns (n, k, group_size, n_groups, np, kp).");

  // --- ops ---
  m.def(
      "q8_linear",
      [](const std::string& kind, uintptr_t x, bool x_bf16, int64_t rows, int64_t ldx, uintptr_t blob, size_t size,
         uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads, int act, int split) {
        const KernelKind kk = q8_kind_from(kind);
        if (act < 0 || act >= kNumActivations) throw py::value_error("q8_linear: unknown activation code");
        if (split < kSplitAuto || split > kSplitRows) throw py::value_error("q8_linear: split must be 0 (auto), 1 (columns) or 2 (rows)");
        const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("q8_linear: bad row count or strides");
        const KernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = q8_linear(kk, as_ptr<const void>(x), x_bf16, rows, ldx, v, as_ptr<const float>(bias), as_ptr<float>(y), ldy,
                         nthreads, current_isa_mask(), act, split);
        }
        return ki->name;
      },
      py::arg("kind"), py::arg("x"), py::arg("x_bf16"), py::arg("rows"), py::arg("ldx"), py::arg("blob"),
      py::arg("size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"), py::arg("act") = 0, py::arg("split") = 0);

  m.def(
      "q8_linear_prequantized",
      [](uintptr_t a, uintptr_t a_scale, uintptr_t a_zp, uintptr_t x, int64_t rows, int64_t ldx, uintptr_t blob,
         size_t size, uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads, int act) {
        if (act < 0 || act >= kNumActivations) throw py::value_error("q8_linear_prequantized: unknown activation code");
        const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("q8_linear_prequantized: bad row count or strides");
        const KernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = q8_linear_prequantized(as_ptr<const uint8_t>(a), as_ptr<const float>(a_scale), as_ptr<const int32_t>(a_zp),
                                      as_ptr<const float>(x), rows, ldx, v, as_ptr<const float>(bias), as_ptr<float>(y),
                                      ldy, nthreads, current_isa_mask(), act);
        }
        return ki->name;
      },
      py::arg("a"), py::arg("a_scale"), py::arg("a_zp"), py::arg("x"), py::arg("rows"), py::arg("ldx"), py::arg("blob"),
      py::arg("size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"), py::arg("act") = 0,
      "q8 dynamic linear over rows quantized by the caller: a is rows x kp uint8 (stride kp), a_scale float32 and "
      "a_zp int32 one per row (scale <= 0: the row is computed in float32 from x, fp32 rows at stride ldx).");

  // --- activations (the fused GEMM epilogue; kernels/act/act.h) ---
  def_kernel_table(m, "act_kernels", act_table, [](const ActInfo& k) { return kernel_row(k.name, k.isa); }, false);
  def_all_kernels(m);
  m.def("select_act", [] { return std::string(select_act(current_isa_mask())->name); });
  m.def(
      "act_apply",
      [](const std::string& kernel, int act, uintptr_t y, int64_t n) {
        if (act < 0 || act >= kNumActivations) throw py::value_error("act_apply: unknown activation code");
        if (n < 0) throw py::value_error("act_apply: n < 0");
        int cnt = 0;
        const ActInfo* t = act_table(&cnt);
        const ActInfo* k = named_kernel(t, cnt, kernel, "activation ");
        py::gil_scoped_release nogil;
        k->fn(act, as_ptr<float>(y), n);
      },
      py::arg("kernel"), py::arg("act"), py::arg("y"), py::arg("n"),
      "Test hook: applies activation code `act` in place to n floats at y with the named kernel.");

  // --- test hooks: one named kernel, forced ---
  def_dot_hook(m, "q8_dot_i32", kernel_by_name, q8_view, q8_dot_i32, "out is rows x np int32; a is rows x kp uint8");
  m.def(
      "q8_linear_forced",
      [](const std::string& kernel, uintptr_t x, bool x_bf16, int64_t rows, int64_t ldx, uintptr_t blob, size_t size,
         uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads, int act, int split) {
        const KernelInfo* ki = kernel_by_name(kernel);
        if (act < 0 || act >= kNumActivations) throw py::value_error("q8_linear_forced: unknown activation code");
        if (split < kSplitAuto || split > kSplitRows) throw py::value_error("q8_linear_forced: bad split");
        const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("q8_linear_forced: bad row count or strides");
        py::gil_scoped_release nogil;
        q8_linear_with(ki, as_ptr<const void>(x), x_bf16, rows, ldx, v, as_ptr<const float>(bias), as_ptr<float>(y), ldy,
                       nthreads, current_isa_mask(), act, split);
      },
      py::arg("kernel"), py::arg("x"), py::arg("x_bf16"), py::arg("rows"), py::arg("ldx"), py::arg("blob"),
      py::arg("size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"), py::arg("act") = 0,
      py::arg("split") = 0, "Test hook: q8_linear with the named micro-kernel (emulated ones included).");
  m.def(
      "amxemu_tile_op",
      [](int op, int rows, int colsb_a, int colsb_c, uintptr_t a, int64_t lda, uintptr_t b, int64_t ldb, uintptr_t c,
         int64_t ldc) {
        if (!amxemu_tile_op(op, rows, colsb_a, colsb_c, as_ptr<const void>(a), lda, as_ptr<const void>(b), ldb,
                            as_ptr<void>(c), ldc))
          throw py::value_error("amxemu_tile_op: op must be 0..2 and the shapes fit palette 1 (rows <= 16, colsb <= 64, multiples of 4)");
      },
      py::arg("op"), py::arg("rows"), py::arg("colsb_a"), py::arg("colsb_c"), py::arg("a"), py::arg("lda"), py::arg("b"),
      py::arg("ldb"), py::arg("c"), py::arg("ldc"),
      "Test hook: one emulated tile instruction (0 tdpbusd, 1 tdpbssd, 2 tdpbf16ps) on C += A . B.");
  m.def(
      "quantize_rows_u8",
      [](const std::string& kernel, uintptr_t x, int64_t rows, int64_t k, int64_t kp, uintptr_t q, uintptr_t scale,
         uintptr_t zp) {
        const KernelInfo* ki = kernel_by_name(kernel);
        if (ki->quantize == nullptr) throw py::value_error("kernel has no quantizer");
        std::vector<bool> finite(rows);
        {
          py::gil_scoped_release nogil;
          for (int64_t r = 0; r < rows; ++r)
            finite[r] = ki->quantize(as_ptr<const float>(x) + r * k, k, kp, as_ptr<uint8_t>(q) + r * kp, as_ptr<float>(scale) + r,
                                     as_ptr<int32_t>(zp) + r);
        }
        return finite;
      },
      py::arg("kernel"), py::arg("x"), py::arg("rows"), py::arg("k"), py::arg("kp"), py::arg("q"), py::arg("scale"),
      py::arg("zp"));
}
