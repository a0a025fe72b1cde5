// Bindings of the attention family (kernels/attention). Tensors cross as (pointer, sizes, strides) integers;
// slimnn/ops.py checks dtypes, shapes and strides, and this layer re-checks what memory safety relies on
// (sizes non-negative, heads divisible, inner strides implied contiguous).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "kernels/attention/attention.h"

namespace py = pybind11;

namespace slimnn {
namespace {

const AttnKernelInfo* kernel_arg(const std::string& kernel) {
  if (kernel.empty()) return nullptr;
  int n = 0;
  const AttnKernelInfo* t = attention_kernel_table(&n);
  return named_kernel(t, n, kernel, "attention ");
}

void need3(const std::vector<int64_t>& s, const char* what) {
  if (s.size() != 3) throw py::value_error(std::string("attention_f32: ") + what + " needs 3 strides");
}

}  // namespace

void bind_attention(py::module_& m) {
  def_kernel_table(m, "attention_kernels", attention_kernel_table, [](const AttnKernelInfo& k) { return kernel_row(k.name, k.isa, "attention_f32", 4, k.width, false); });
  m.def("attention_select_kernel", [] { return std::string(select_attention_kernel(current_isa_mask())->name); });
  m.def(
      "attention_exp",
      [](uintptr_t x, uintptr_t y, int64_t n, const std::string& kernel) {
        const AttnKernelInfo* ki = kernel_arg(kernel);
        if (ki == nullptr) ki = select_attention_kernel(current_isa_mask());
        if (n < 0) throw py::value_error("attention_exp: n must be >= 0");
        py::gil_scoped_release nogil;
        ki->exp(as_ptr<const float>(x), as_ptr<float>(y), n);
        return std::string(ki->name);
      },
      py::arg("x"), py::arg("y"), py::arg("n"), py::arg("kernel") = "",
      "y[i] = exp(x[i]) with the attention kernel's polynomial (fp32). Returns the kernel used.");
  m.def(
      "attention_f32",
      [](const std::vector<int64_t>& sizes, uintptr_t q, const std::vector<int64_t>& qs, uintptr_t k,
         const std::vector<int64_t>& ks, uintptr_t v, const std::vector<int64_t>& vs, uintptr_t o,
         const std::vector<int64_t>& os, int mask_kind, uintptr_t mask, const std::vector<int64_t>& ms, bool causal,
         double scale, int nthreads, const std::string& kernel) {
        if (sizes.size() != 7) throw py::value_error("attention_f32: sizes must be [b, hq, hkv, lq, lk, d, dv]");
        for (int64_t s : sizes)
          if (s < 0) throw py::value_error("attention_f32: negative size");
        need3(qs, "q"), need3(ks, "k"), need3(vs, "v"), need3(os, "out");
        if (sizes[2] == 0 ? sizes[1] != 0 : sizes[1] % sizes[2] != 0)
          throw py::value_error("attention_f32: query heads must be a multiple of key/value heads");
        if (mask_kind < 0 || mask_kind > 2) throw py::value_error("attention_f32: mask_kind must be 0, 1 or 2");
        const bool empty = sizes[0] == 0 || sizes[1] == 0 || sizes[3] == 0 || sizes[4] == 0 || sizes[6] == 0;
        if (mask_kind != 0 && ((mask == 0 && !empty) || ms.size() != 3)) throw py::value_error("attention_f32: mask needs a pointer and 3 strides");
        const AttnKernelInfo* ki = kernel_arg(kernel);
        AttnProblem p;
        p.b = sizes[0], p.hq = sizes[1], p.hkv = sizes[2], p.lq = sizes[3], p.lk = sizes[4], p.d = sizes[5], p.dv = sizes[6];
        p.q = as_ptr<const float>(q), p.q_sb = qs[0], p.q_sh = qs[1], p.q_sl = qs[2];
        p.k = as_ptr<const float>(k), p.k_sb = ks[0], p.k_sh = ks[1], p.k_sl = ks[2];
        p.v = as_ptr<const float>(v), p.v_sb = vs[0], p.v_sh = vs[1], p.v_sl = vs[2];
        p.o = as_ptr<float>(o), p.o_sb = os[0], p.o_sh = os[1], p.o_sl = os[2];
        p.mask_kind = mask_kind;
        p.mask = as_ptr<const void>(mask);
        p.m_sb = mask_kind ? ms[0] : 0, p.m_sh = mask_kind ? ms[1] : 0, p.m_sl = mask_kind ? ms[2] : 0;
        p.causal = causal;
        p.scale = float(scale);
        {
          py::gil_scoped_release nogil;
          ki = attention_f32(p, nthreads, current_isa_mask(), ki);
        }
        return std::string(ki->name);
      },
      py::arg("sizes"), py::arg("q"), py::arg("q_strides"), py::arg("k"), py::arg("k_strides"), py::arg("v"),
      py::arg("v_strides"), py::arg("out"), py::arg("out_strides"), py::arg("mask_kind"), py::arg("mask"),
      py::arg("mask_strides"), py::arg("causal"), py::arg("scale"), py::arg("nthreads"), py::arg("kernel") = "",
      "out = softmax(q k^T * scale + mask) v over fp32 [b, h, l, d] views given by element strides of their "
      "first three dims (last dim contiguous). Returns the kernel used.");
}

}  // namespace slimnn
