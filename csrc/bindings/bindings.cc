#include "bindings/bindings.h"

#include <pybind11/functional.h>

#include <vector>

#include "common/isa.h"
#include "kernels/qgemm/qgemm.h"

namespace py = pybind11;

namespace slimnn {

py::dict kernel_row(const char* name, uint32_t isa, const char* kind, int mr, int nr, bool gemv) {
  py::dict d;
  d["name"] = name;
  if (kind != nullptr) d["kind"] = kind;
  d["isa"] = isa_name(isa);
  if (kind != nullptr) {
    d["mr"] = mr;
    d["nr"] = nr;
    d["gemv"] = gemv;
  }
  d["available"] = (isa & detected_isa_mask()) != 0;
  return d;
}

namespace {
std::vector<std::function<py::list()>>& all_lists() {
  static std::vector<std::function<py::list()>> lists;  // filled while the module initializes (under the GIL)
  return lists;
}
}  // namespace

void def_kernel_list(py::module_& m, const char* name, std::function<py::list()> rows, bool in_all) {
  if (in_all) all_lists().push_back(rows);
  m.def(name, rows);
}

void def_all_kernels(py::module_& m) {
  m.def("all_kernels", [] {
    py::list out;
    for (const auto& rows : all_lists())
      for (const auto& row : rows()) out.append(row);
    return out;
  }, "Every kernel of the build (all families but the activations), best first per kind.");
}

void require_cpu_isa(uint32_t isa, const char* name) {
  if ((isa & detected_isa_mask()) == 0)
    throw py::value_error(std::string("kernel ") + name + " needs " + isa_name(isa) + ", which this CPU lacks");
}

KernelKind q8_kind_from(const std::string& s) {
  if (s == "q8_dynamic") return KernelKind::kQ8Dyn;
  if (s == "q8_weight_only") return KernelKind::kQ8Wo;
  throw py::value_error("unknown kernel kind '" + s + "' (expected 'q8_dynamic' or 'q8_weight_only')");
}

// Add one line per family: declare its binder here and call it below.
void bind_lowrank(py::module_& m);
void bind_int4(py::module_& m);
void bind_sparse(py::module_& m);
void bind_bitmap(py::module_& m);
void bind_attention(py::module_& m);
void bind_conv(py::module_& m);
void bind_decode(py::module_& m);

void bind_families(py::module_& m) {
  bind_lowrank(m);
  bind_int4(m);
  bind_sparse(m);
  bind_bitmap(m);
  bind_attention(m);
  bind_conv(m);
  bind_decode(m);
}

}  // namespace slimnn
