// One bind_<family>(m) per kernel family, each in its own bind_<family>.cc; bind_families calls them all.
// The helpers below are the conventions every binding shares (bindings.cc).
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <functional>
#include <string>

namespace slimnn {

enum class KernelKind : int;

template <typename T>
T* as_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void bind_families(pybind11::module_& m);

// One row of slimnn.kernels(): name, isa and whether this CPU runs it, and (kind non-null) kind, mr, nr, gemv.
pybind11::dict kernel_row(const char* name, uint32_t isa, const char* kind = nullptr, int mr = 0, int nr = 0,
                          bool gemv = false);
// The rows of a family's whole table, row(entry) making each (a kernel_row).
template <typename T, typename Row>
pybind11::list kernel_rows(const T* table, int n, Row row) {
  pybind11::list out;
  for (int i = 0; i < n; ++i) out.append(row(table[i]));
  return out;
}
// Defines m.<name>() -> the family's kernel rows (rows() returns a pybind11::list of kernel_row dicts) and,
// with in_all, adds them to m.all_kernels() (slimnn.kernels()), in the order the families are bound.
void def_kernel_list(pybind11::module_& m, const char* name, std::function<pybind11::list()> rows,
                     bool in_all = true);
// def_kernel_list over a family's whole table (`table(&count)`, e.g. spmm_kernel_table), row(entry) making
// each row.
template <typename T, typename Row>
void def_kernel_table(pybind11::module_& m, const char* name, const T* (*table)(int*), Row row, bool in_all = true) {
  def_kernel_list(
      m, name,
      [table, row] {
        int n = 0;
        const T* t = table(&n);
        return kernel_rows(t, n, row);
      },
      in_all);
}
// Defines m.<name>() -> the rows of a family's test-only table of emulated kernels (e.g. the AMX twins), each
// row(entry) with "emulated": true; not part of m.all_kernels() (they are never selected).
template <typename T, typename Row>
void def_emulated_table(pybind11::module_& m, const char* name, const T* (*table)(int*), Row row) {
  m.def(
      name,
      [table, row] {
        int n = 0;
        const T* t = table(&n);
        pybind11::list out = kernel_rows(t, n, row);
        for (auto r : out) r.template cast<pybind11::dict>()["emulated"] = true;
        return out;
      },
      "Test-only kernels (portable emulations of ISA kernels): forced by name, never selected.");
}
// Defines m.all_kernels(): every list def_kernel_list registered with in_all, concatenated.
void def_all_kernels(pybind11::module_& m);
// ValueError "kernel <name> needs <isa>, which this CPU lacks" unless the CPU has the ISA bit `isa`.
void require_cpu_isa(uint32_t isa, const char* name);
// The entry of `table` named `name`, runnable here; else ValueError "unknown <what>kernel '<name>'<suffix>".
template <typename T>
const T* named_kernel(const T* table, int n, const std::string& name, const char* what, const char* suffix = "") {
  for (int i = 0; i < n; ++i)
    if (name == table[i].name) {
      require_cpu_isa(table[i].isa, table[i].name);
      return &table[i];
    }
  throw pybind11::value_error("unknown " + std::string(what) + "kernel '" + name + "'" + suffix);
}
// "q8_dynamic" / "q8_weight_only" -> the q8 kernel kind; ValueError otherwise.
KernelKind q8_kind_from(const std::string& s);

// The integer-dot test hook of a q8-style family (q8_dot_i32, q4_dot_i32): the kernel by name, the blob's
// view (header check only), lda >= kp, then the family's dot driver without the GIL.
template <typename ByName, typename ViewOf, typename Dot>
void def_dot_hook(pybind11::module_& m, const char* name, ByName by_name, ViewOf view_of, Dot dot, const char* doc) {
  m.def(
      name,
      [by_name, view_of, dot](const std::string& kernel, uintptr_t a, int64_t rows, int64_t lda, uintptr_t blob,
                              size_t size, uintptr_t out) {
        const auto* ki = by_name(kernel);
        if (ki->dot == nullptr) throw pybind11::value_error("kernel has no integer dot hook");
        const auto v = view_of(as_ptr<const uint8_t>(blob), size, false);
        if (lda < v.kp) throw pybind11::value_error("lda < kp");
        pybind11::gil_scoped_release nogil;
        dot(ki, as_ptr<const uint8_t>(a), rows, lda, v, as_ptr<int32_t>(out));
      },
      pybind11::arg("kernel"), pybind11::arg("a"), pybind11::arg("rows"), pybind11::arg("lda"),
      pybind11::arg("blob"), pybind11::arg("size"), pybind11::arg("out"), doc);
}

}  // namespace slimnn
