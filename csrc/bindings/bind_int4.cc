// Bindings of the q4 format and the q4 kernels (same conventions as module.cc: pointers cross as integers,
// the Python layer checks dtypes and shapes, this layer re-validates blobs and releases the GIL).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "formats/q4.h"
#include "kernels/q4gemm/q4gemm.h"

namespace py = pybind11;

namespace slimnn {
namespace {

const char* q4_kind_name(Q4KernelKind k) {
  return k == Q4KernelKind::kQ4Dyn ? "q4_dynamic" : k == Q4KernelKind::kQ4Wo ? "q4_weight_only" : "q4_weight_only_panel";
}

Q4KernelKind q4_kind_from(const std::string& s) {
  if (s == "q4_dynamic") return Q4KernelKind::kQ4Dyn;
  if (s == "q4_weight_only") return Q4KernelKind::kQ4Wo;
  throw py::value_error("unknown q4 kernel kind '" + s + "' (expected 'q4_dynamic' or 'q4_weight_only')");
}

ScaleDtype scale_dtype_from(int code) {
  if (code < 0 || code > 2) throw py::value_error("scale dtype code must be 0 (fp32), 1 (fp16) or 2 (bf16)");
  return static_cast<ScaleDtype>(code);
}

// A kernel of the table or, for the test hooks, of the emulated (test-only) table.
const Q4KernelInfo* q4_kernel_by_name(const std::string& name) {
  int n = 0;
  const Q4KernelInfo* e = q4_emulated_kernel_table(&n);
  for (int i = 0; i < n; ++i)
    if (name == e[i].name) return &e[i];
  const Q4KernelInfo* t = q4_kernel_table(&n);
  return named_kernel(t, n, name, "q4 ");
}

py::dict q4_kernel_row(const Q4KernelInfo& k) {
  py::dict d = kernel_row(k.name, k.isa, q4_kind_name(k.kind), k.mr, k.np * 16, k.gemv);
  d["min_m"] = q4_kernel_min_rows(k);  // the selector picks it only from this many rows on (AMX: the crossover)
  return d;
}

}  // namespace

void bind_int4(py::module_& m) {
  def_kernel_table(m, "q4_kernels", q4_kernel_table, q4_kernel_row);
  def_emulated_table(m, "q4_emulated_kernels", q4_emulated_kernel_table, q4_kernel_row);
  m.def(
      "q4_select_kernel",
      [](const std::string& kind, int64_t rows) {
        return std::string(q4_select_kernel(q4_kind_from(kind), rows, current_isa_mask())->name);
      },
      py::arg("kind"), py::arg("m"));

  m.def(
      "q4_blob_bytes",
      [](int64_t n, int64_t k, int64_t group_size, int scale_dtype, int zero_mode) {
        return q4_blob_bytes(n, k, group_size, scale_dtype_from(scale_dtype), zero_mode);
      },
      py::arg("n"), py::arg("k"), py::arg("group_size"), py::arg("scale_dtype"), py::arg("zero_mode"),
      "zero_mode: 0 symmetric, 1 integer zero points, 2 float zero points");
  m.def(
      "q4_pack",
      [](uintptr_t codes, uintptr_t scales, uintptr_t zeros, uintptr_t fzeros, int64_t n, int64_t k,
         int64_t group_size, int scale_dtype, uintptr_t out, size_t out_size) {
        const ScaleDtype sd = scale_dtype_from(scale_dtype);
        if (zeros != 0 && fzeros != 0) throw py::value_error("q4_pack: give integer or float zero points, not both");
        const int mode = zeros != 0 ? kQ4IntZero : fzeros != 0 ? kQ4FloatZero : kQ4Symmetric;
        if (out_size != q4_blob_bytes(n, k, group_size, sd, mode))
          throw py::value_error("q4_pack: output buffer has the wrong size");
        py::gil_scoped_release nogil;
        q4_pack(as_ptr<const uint8_t>(codes), as_ptr<const void>(scales), as_ptr<const uint8_t>(zeros),
                as_ptr<const void>(fzeros), n, k, group_size, sd, as_ptr<uint8_t>(out));
      },
      py::arg("codes"), py::arg("scales"), py::arg("zeros"), py::arg("fzeros"), py::arg("n"), py::arg("k"),
      py::arg("group_size"), py::arg("scale_dtype"), py::arg("out"), py::arg("out_size"));
  m.def(
      "q4_unpack",
      [](uintptr_t blob, size_t size, uintptr_t codes, uintptr_t scales, uintptr_t zeros, uintptr_t fzeros) {
        const Q4View v = q4_view(as_ptr<const uint8_t>(blob), size, false);
        py::gil_scoped_release nogil;
        q4_unpack(v, as_ptr<uint8_t>(codes), as_ptr<void>(scales), as_ptr<uint8_t>(zeros), as_ptr<void>(fzeros));
      },
      py::arg("blob"), py::arg("size"), py::arg("codes"), py::arg("scales"), py::arg("zeros"), py::arg("fzeros"));
  m.def(
      "q4_header",
      [](uintptr_t blob, size_t size, bool full_check) {
        Q4View v;
        {
          py::gil_scoped_release nogil;
          v = q4_view(as_ptr<const uint8_t>(blob), size, full_check);
        }
        const int mode = v.fzeros ? kQ4FloatZero : v.zeros ? kQ4IntZero : kQ4Symmetric;
        return py::make_tuple(v.n, v.k, v.group_size, v.n_groups, v.np, v.kp, static_cast<int>(v.scale_dtype),
                              mode);
      },
      py::arg("blob"), py::arg("size"), py::arg("full_check"),
      "Validates a q4 blob; returns (n, k, group_size, n_groups, np, kp, scale_dtype, zero_mode).");

  m.def(
      "q4_linear",
      [](const std::string& kind, uintptr_t x, bool x_bf16, int64_t rows, int64_t ldx, uintptr_t in_mul,
         uintptr_t blob, size_t size, uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads) {
        const Q4KernelKind kk = q4_kind_from(kind);
        const Q4View v = q4_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("q4_linear: bad row count or strides");
        const Q4KernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = q4_linear(kk, as_ptr<const void>(x), x_bf16, rows, ldx, as_ptr<const float>(in_mul), v,
                         as_ptr<const float>(bias), as_ptr<float>(y), ldy, nthreads, current_isa_mask());
        }
        return ki->name;
      },
      py::arg("kind"), py::arg("x"), py::arg("x_bf16"), py::arg("rows"), py::arg("ldx"), py::arg("in_mul"),
      py::arg("blob"), py::arg("size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"));

  m.def(
      "q4_linear_forced",
      [](const std::string& kernel, uintptr_t x, bool x_bf16, int64_t rows, int64_t ldx, uintptr_t in_mul,
         uintptr_t blob, size_t size, uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads) {
        const Q4KernelInfo* ki = q4_kernel_by_name(kernel);
        const Q4View v = q4_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("q4_linear_forced: bad row count or strides");
        py::gil_scoped_release nogil;
        q4_linear_with(ki, as_ptr<const void>(x), x_bf16, rows, ldx, as_ptr<const float>(in_mul), v,
                       as_ptr<const float>(bias), as_ptr<float>(y), ldy, nthreads,
                       current_isa_mask());
      },
      py::arg("kernel"), py::arg("x"), py::arg("x_bf16"), py::arg("rows"), py::arg("ldx"), py::arg("in_mul"),
      py::arg("blob"), py::arg("size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"),
      "Test hook: q4_linear with the named kernel (emulated ones included; ValueError if this CPU lacks its ISA).");
  def_dot_hook(m, "q4_dot_i32", q4_kernel_by_name, q4_view, q4_dot_i32,
               "out is rows x n_groups x np int32 (E_g); a is rows x kp uint8");
}

}  // namespace slimnn
