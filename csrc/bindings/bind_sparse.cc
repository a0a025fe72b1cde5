// Bindings of the sparse family: formats (pack, unpack, info) and the spmm op. Tensors cross as integer
// data pointers and sizes; slimnn/sparse_ops.py owns dtype/shape checks and buffer lifetimes, and the blob
// is re-validated here (header, layout, row pointers) before any kernel reads it. Long calls release the GIL.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>

#include "bindings/bind_bitmap.h"
#include "bindings/bindings.h"
#include "common/isa.h"
#include "formats/sparse.h"
#include "kernels/spmm/spmm.h"

namespace py = pybind11;

namespace slimnn {
namespace {

SparseValues values_from(const std::string& s) {
  if (s == "fp32") return SparseValues::kF32;
  if (s == "int8") return SparseValues::kI8;
  throw py::value_error("values must be 'fp32' or 'int8', got '" + s + "'");
}

const char* values_name(SparseValues v) { return v == SparseValues::kF32 ? "fp32" : "int8"; }

const char* format_name(FormatId f) {
  switch (f) {
    case FormatId::kSparseCsr: return "csr";
    case FormatId::kBsr: return "bsr";
    case FormatId::kNm: return "nm";
    default: return "?";
  }
}

const SpmmKernelInfo* spmm_by_name(const std::string& name) {
  int n = 0;
  const SpmmKernelInfo* t = spmm_kernel_table(&n);
  return named_kernel(t, n, name, "sparse ");
}

SpmmKind kind_from(const std::string& s) {
  for (int i = 0; i < 6; ++i)
    if (s == spmm_kind_name(static_cast<SpmmKind>(i))) return static_cast<SpmmKind>(i);
  throw py::value_error("unknown sparse kernel kind '" + s + "'");
}

py::dict info(uintptr_t blob, size_t size, bool full_check) {
  if (is_bitmap_blob(blob, size)) return bitmap_info(blob, size, full_check);
  const SparseView v = sparse_view(as_ptr<const uint8_t>(blob), size, full_check);
  SparseHeader h;
  std::memcpy(&h, as_ptr<const uint8_t>(blob), sizeof h);
  py::dict d = sparse_info_dict(format_name(v.format), values_name(v.values_type), v.n, v.k, v.nnz, v.n_units,
                                v.n_entries);
  // meta: header, row pointers, permutation
  put_section_bytes(d, h.total_bytes, h.off_scales ? h.off_scales - h.off_values : h.total_bytes - h.off_values,
                    h.off_values - h.off_index, h.off_scales ? h.total_bytes - h.off_scales : 0, h.off_index);
  if (v.format == FormatId::kSparseCsr) {
    d["index_bits"] = v.index_bits;
  } else if (v.format == FormatId::kBsr) {
    d["block"] = py::make_tuple(v.br, v.bc);
  } else {
    d["nm"] = py::make_tuple(v.nm_n, v.nm_m);
  }
  d["kind"] = spmm_kind_name(spmm_kind(v));
  return d;
}

}  // namespace

py::dict sparse_info_dict(const char* format, const char* values, int64_t n, int64_t k, int64_t nnz, int64_t units,
                          int64_t entries) {
  py::dict d;
  d["format"] = format;
  d["values"] = values;
  d["n"] = n;
  d["k"] = k;
  d["nnz"] = nnz;
  d["units"] = units;
  d["entries"] = entries;
  return d;
}

void put_section_bytes(py::dict& d, uint64_t total, uint64_t values, uint64_t index, uint64_t scales, uint64_t meta) {
  d["total_bytes"] = total;
  d["value_bytes"] = values;
  d["index_bytes"] = index;
  d["scale_bytes"] = scales;
  d["meta_bytes"] = meta;
}

void bind_sparse(py::module_& m) {
  def_kernel_table(m, "spmm_kernels", spmm_kernel_table, [](const SpmmKernelInfo& k) {
    return kernel_row(k.name, k.isa, (std::string("sparse_") + spmm_kind_name(k.kind)).c_str(), k.mt, kSellLanes, k.gemv);
  });
  m.def(
      "spmm_select",
      [](const std::string& kind, int64_t rows) { return std::string(select_spmm(kind_from(kind), rows, current_isa_mask())->name); },
      py::arg("kind"), py::arg("m"));

  m.def(
      "sparse_csr_bytes",
      [](uintptr_t w, const std::string& values, int64_t n, int64_t k, int bits) {
        const SparseValues vt = values_from(values);
        py::gil_scoped_release nogil;
        return csr_pack_bytes(as_ptr<const void>(w), vt, n, k, bits);
      },
      py::arg("w"), py::arg("values"), py::arg("n"), py::arg("k"), py::arg("index_bits"));
  m.def(
      "sparse_csr_pack",
      [](uintptr_t w, uintptr_t scales, const std::string& values, int64_t n, int64_t k, int bits, uintptr_t out,
         uint64_t out_size) {
        const SparseValues vt = values_from(values);
        py::gil_scoped_release nogil;
        csr_pack(as_ptr<const void>(w), as_ptr<const float>(scales), vt, n, k, bits, as_ptr<uint8_t>(out), out_size);
      },
      py::arg("w"), py::arg("scales"), py::arg("values"), py::arg("n"), py::arg("k"), py::arg("index_bits"),
      py::arg("out"), py::arg("out_size"));
  m.def(
      "sparse_bsr_bytes",
      [](uintptr_t w, const std::string& values, int64_t n, int64_t k, int r, int c) {
        const SparseValues vt = values_from(values);
        py::gil_scoped_release nogil;
        return bsr_pack_bytes(as_ptr<const void>(w), vt, n, k, r, c);
      },
      py::arg("w"), py::arg("values"), py::arg("n"), py::arg("k"), py::arg("r"), py::arg("c"));
  m.def(
      "sparse_bsr_pack",
      [](uintptr_t w, uintptr_t scales, const std::string& values, int64_t n, int64_t k, int r, int c, uintptr_t out,
         uint64_t out_size) {
        const SparseValues vt = values_from(values);
        py::gil_scoped_release nogil;
        bsr_pack(as_ptr<const void>(w), as_ptr<const float>(scales), vt, n, k, r, c, as_ptr<uint8_t>(out), out_size);
      },
      py::arg("w"), py::arg("scales"), py::arg("values"), py::arg("n"), py::arg("k"), py::arg("r"), py::arg("c"),
      py::arg("out"), py::arg("out_size"));
  m.def(
      "sparse_nm_bytes",
      [](const std::string& values, int64_t n, int64_t k, int nm_n, int nm_m) {
        return nm_pack_bytes(values_from(values), n, k, nm_n, nm_m);
      },
      py::arg("values"), py::arg("n"), py::arg("k"), py::arg("nm_n"), py::arg("nm_m"));
  m.def(
      "sparse_nm_pack",
      [](uintptr_t w, uintptr_t scales, const std::string& values, int64_t n, int64_t k, int nm_n, int nm_m,
         uintptr_t out, uint64_t out_size) {
        const SparseValues vt = values_from(values);
        py::gil_scoped_release nogil;
        nm_pack(as_ptr<const void>(w), as_ptr<const float>(scales), vt, n, k, nm_n, nm_m, as_ptr<uint8_t>(out),
                out_size);
      },
      py::arg("w"), py::arg("scales"), py::arg("values"), py::arg("n"), py::arg("k"), py::arg("nm_n"),
      py::arg("nm_m"), py::arg("out"), py::arg("out_size"));
  m.def("sparse_info", &info, py::arg("blob"), py::arg("size"), py::arg("full_check"),
        "Validates a sparse blob and describes it (format, values, shape, nnz, bytes per section).");
  m.def(
      "sparse_unpack",
      [](uintptr_t blob, size_t size, uintptr_t w, uintptr_t scales) {
        if (is_bitmap_blob(blob, size)) return bitmap_unpack_to(blob, size, w, scales);
        const SparseView v = sparse_view(as_ptr<const uint8_t>(blob), size, false);
        py::gil_scoped_release nogil;
        sparse_unpack(v, as_ptr<void>(w), v.values_type == SparseValues::kI8 ? as_ptr<float>(scales) : nullptr);
      },
      py::arg("blob"), py::arg("size"), py::arg("w"), py::arg("scales"),
      "w: N x K fp32 or int8 (the blob's values); scales: N fp32 (int8 only).");
  m.def(
      "sparse_linear",
      [](uintptr_t x, int64_t rows, int64_t k, int64_t ldx, uintptr_t blob, size_t size, uintptr_t bias, uintptr_t y,
         int64_t n, int64_t ldy, int nthreads, const std::string& kernel) {
        if (is_bitmap_blob(blob, size))
          return bitmap_linear_call(x, rows, k, ldx, blob, size, bias, y, n, ldy, nthreads, kernel);
        const SparseView v = sparse_view(as_ptr<const uint8_t>(blob), size, false);
        if (k != v.k || n != v.n)
          throw py::value_error("sparse_linear: the blob is for a " + std::to_string(v.k) + "->" + std::to_string(v.n) +
                                " layer, the call is " + std::to_string(k) + "->" + std::to_string(n));
        if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("sparse_linear: bad row count or strides");
        const SpmmKernelInfo* forced = nullptr;
        if (!kernel.empty()) {
          forced = spmm_by_name(kernel);
          if (forced->kind != spmm_kind(v))
            throw py::value_error(std::string("kernel ") + forced->name + " does not run " + spmm_kind_name(spmm_kind(v)) +
                                  " weights");
        }
        const SpmmKernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = sparse_linear(v, as_ptr<const float>(x), rows, ldx, as_ptr<const float>(bias), as_ptr<float>(y), ldy,
                             nthreads, current_isa_mask(), forced);
        }
        return std::string(ki->name);
      },
      py::arg("x"), py::arg("rows"), py::arg("k"), py::arg("ldx"), py::arg("blob"), py::arg("size"), py::arg("bias"),
      py::arg("y"), py::arg("n"), py::arg("ldy"), py::arg("nthreads"), py::arg("kernel") = "");
}

}  // namespace slimnn
