// Bindings of the lowrank family (kernels/lowrank). Tensors cross as (pointer, sizes) integers; slimnn/ops.py
// checks dtypes, shapes and contiguity, and this layer re-checks what memory safety relies on.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "formats/q8.h"
#include "kernels/lowrank/lowrank.h"

namespace py = pybind11;

namespace slimnn {
namespace {

// rowptr == 0: no residual. The O(n) row-pointer check runs per call (the kernel's loop bounds come from it);
// column indices are range-guarded inside the kernel; lowrank_check_csr does the full O(nnz) check once.
bool make_residual(uintptr_t rowptr, uintptr_t col, uintptr_t val, int64_t nnz, int64_t n, int64_t k,
                   CsrResidual* s) {
  if (rowptr == 0) return false;
  s->n = n, s->k = k, s->nnz = nnz;
  s->rowptr = as_ptr<const int64_t>(rowptr);
  s->col = as_ptr<const int32_t>(col);
  s->val = as_ptr<const float>(val);
  if (nnz < 0 || s->rowptr[0] != 0 || s->rowptr[n] != nnz)
    throw py::value_error("sparse residual: rowptr must start at 0 and end at nnz");
  for (int64_t i = 0; i < n; ++i)
    if (s->rowptr[i + 1] < s->rowptr[i]) throw py::value_error("sparse residual: rowptr decreases at row " + std::to_string(i));
  return true;
}

}  // namespace

void bind_lowrank(py::module_& m) {
  def_kernel_table(m, "lowrank_kernels", lowrank_kernel_table, [](const LrKernelInfo& k) { return kernel_row(k.name, k.isa, "lowrank_f32", k.mr, k.nr, k.gemv); });
  m.def(
      "lowrank_select_kernel",
      [](int64_t rows) { return std::string(select_lowrank_kernel(rows, current_isa_mask())->name); }, py::arg("m"));
  m.def(
      "lowrank_check_csr",
      [](int64_t n, int64_t k, int64_t nnz, uintptr_t rowptr, uintptr_t col, uintptr_t val) {
        CsrResidual s{n, k, nnz, as_ptr<const int64_t>(rowptr), as_ptr<const int32_t>(col), as_ptr<const float>(val)};
        lowrank_check_csr(s);
      },
      py::arg("n"), py::arg("k"), py::arg("nnz"), py::arg("rowptr"), py::arg("col"), py::arg("val"));
  m.def(
      "lowrank_f32_linear",
      [](uintptr_t x, int64_t rows, int64_t ldx, int64_t n, int64_t k, int64_t r, uintptr_t u, uintptr_t v,
         uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads, const std::string& kernel, uintptr_t rowptr,
         uintptr_t col, uintptr_t val, int64_t nnz) {
        if (rows < 0 || n <= 0 || k <= 0 || r <= 0 || ldx < k || ldy < n)
          throw py::value_error("lowrank_f32_linear: bad shapes or strides");
        const LrKernelInfo* ki = nullptr;
        if (!kernel.empty()) {
          int cnt = 0;
          const LrKernelInfo* t = lowrank_kernel_table(&cnt);
          ki = named_kernel(t, cnt, kernel, "lowrank ");
        }
        CsrResidual s;
        const bool has_res = make_residual(rowptr, col, val, nnz, n, k, &s);
        LowRankF32 w{n, k, r, as_ptr<const float>(u), as_ptr<const float>(v)};
        py::gil_scoped_release nogil;
        ki = lowrank_f32_linear(as_ptr<const float>(x), rows, ldx, w, as_ptr<const float>(bias), has_res ? &s : nullptr,
                                as_ptr<float>(y), ldy, nthreads, current_isa_mask(), ki);
        return std::string(ki->name);
      },
      py::arg("x"), py::arg("rows"), py::arg("ldx"), py::arg("n"), py::arg("k"), py::arg("r"), py::arg("u"),
      py::arg("v"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"), py::arg("kernel") = "",
      py::arg("rowptr") = 0, py::arg("col") = 0, py::arg("val") = 0, py::arg("nnz") = 0,
      "y = (x V^T) U^T + bias (+ x S^T); U is n x r, V is r x k, fp32 row-major. Returns the kernel used.");
  m.def(
      "lowrank_q8_linear",
      [](const std::string& kind, uintptr_t x, int64_t rows, int64_t ldx, uintptr_t v_blob, size_t v_size,
         uintptr_t u_blob, size_t u_size, uintptr_t bias, uintptr_t y, int64_t ldy, int nthreads, uintptr_t rowptr,
         uintptr_t col, uintptr_t val, int64_t nnz) {
        const KernelKind kk = q8_kind_from(kind);
        const Q8View v = q8_view(as_ptr<const uint8_t>(v_blob), v_size, false);
        const Q8View u = q8_view(as_ptr<const uint8_t>(u_blob), u_size, false);
        if (u.k != v.n)
          throw py::value_error("lowrank_q8_linear: U has " + std::to_string(u.k) + " inputs but V has " +
                                std::to_string(v.n) + " outputs (the rank must match)");
        if (rows < 0 || ldx < v.k || ldy < u.n) throw py::value_error("lowrank_q8_linear: bad row count or strides");
        CsrResidual s;
        const bool has_res = make_residual(rowptr, col, val, nnz, u.n, v.k, &s);
        const KernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = lowrank_q8_linear(kk, as_ptr<const float>(x), rows, ldx, v, u, as_ptr<const float>(bias),
                                 has_res ? &s : nullptr, as_ptr<float>(y), ldy, nthreads, current_isa_mask());
        }
        return std::string(ki->name);
      },
      py::arg("kind"), py::arg("x"), py::arg("rows"), py::arg("ldx"), py::arg("v_blob"), py::arg("v_size"),
      py::arg("u_blob"), py::arg("u_size"), py::arg("bias"), py::arg("y"), py::arg("ldy"), py::arg("nthreads"),
      py::arg("rowptr") = 0, py::arg("col") = 0, py::arg("val") = 0, py::arg("nnz") = 0,
      "The int8-factor form: V and U are q8 blobs (r x k and n x r). Returns the qgemm kernel used.");
}

}  // namespace slimnn
