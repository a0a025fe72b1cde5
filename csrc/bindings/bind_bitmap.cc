// Bindings of the bitmap sparse format and its kernels (formats/bitmap.h, kernels/bitmap/). Tensors cross as
// integer data pointers and sizes; the blob is re-validated here before any kernel reads it; long calls
// release the GIL.
#include "bindings/bind_bitmap.h"

#include <pybind11/stl.h>

#include <cstring>
#include <string>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "formats/bitmap.h"
#include "kernels/bitmap/bitmap.h"

namespace py = pybind11;

namespace slimnn {
namespace {

const BitmapKernelInfo* forced_kernel(const std::string& name) {
  int n = 0;
  const BitmapKernelInfo* t = bitmap_kernel_table(&n);
  return named_kernel(t, n, name, "sparse ", " for bitmap weights");
}

}  // namespace

bool is_bitmap_blob(uintptr_t blob, size_t size) {
  if (blob == 0 || size < sizeof(BitmapHeader)) return false;
  uint16_t f;
  std::memcpy(&f, as_ptr<const uint8_t>(blob) + offsetof(BitmapHeader, format), 2);
  return f == static_cast<uint16_t>(FormatId::kBitmap);
}

py::dict bitmap_info(uintptr_t blob, size_t size, bool full_check) {
  BitmapView v;
  {
    py::gil_scoped_release nogil;
    v = bitmap_view(as_ptr<const uint8_t>(blob), size, full_check);
  }
  BitmapHeader h;
  std::memcpy(&h, as_ptr<const uint8_t>(blob), sizeof h);
  py::dict d = sparse_info_dict("bitmap", "int8", v.n, v.k, v.nnz, v.groups, v.kc);
  d["group_rows"] = v.group_rows;
  d["stored"] = v.stored;
  // values: with their pad and alignment; scales: and row sums (and their alignment); meta: header, row pointers
  put_section_bytes(d, h.total_bytes, h.off_scales - h.off_values, h.off_values - h.off_masks,
                    h.total_bytes - h.off_scales, h.off_masks);
  d["kind"] = "bitmap_i8";
  return d;
}

void bitmap_unpack_to(uintptr_t blob, size_t size, uintptr_t w, uintptr_t scales) {
  const BitmapView v = bitmap_view(as_ptr<const uint8_t>(blob), size, false);
  py::gil_scoped_release nogil;
  bitmap_unpack(v, as_ptr<int8_t>(w), as_ptr<float>(scales));
}

std::string bitmap_linear_call(uintptr_t x, int64_t rows, int64_t k, int64_t ldx, uintptr_t blob, size_t size,
                               uintptr_t bias, uintptr_t y, int64_t n, int64_t ldy, int nthreads,
                               const std::string& kernel) {
  const BitmapView v = bitmap_view(as_ptr<const uint8_t>(blob), size, false);
  if (k != v.k || n != v.n)
    throw py::value_error("sparse_linear: the blob is for a " + std::to_string(v.k) + "->" + std::to_string(v.n) +
                          " layer, the call is " + std::to_string(k) + "->" + std::to_string(n));
  if (rows < 0 || ldx < v.k || ldy < v.n) throw py::value_error("sparse_linear: bad row count or strides");
  const BitmapKernelInfo* forced = kernel.empty() ? nullptr : forced_kernel(kernel);
  const BitmapKernelInfo* ki;
  {
    py::gil_scoped_release nogil;
    ki = bitmap_linear(v, as_ptr<const float>(x), rows, ldx, as_ptr<const float>(bias), as_ptr<float>(y), ldy,
                       nthreads, current_isa_mask(), forced);
  }
  return ki->name;
}

void bind_bitmap(py::module_& m) {
  def_kernel_table(m, "bitmap_kernels", bitmap_kernel_table, [](const BitmapKernelInfo& k) { return kernel_row(k.name, k.isa, "sparse_bitmap_i8", k.mt, 1, k.gemv); });
  m.def("bitmap_select", [](int64_t rows) { return std::string(select_bitmap(rows, current_isa_mask())->name); },
        py::arg("m"));
  m.def(
      "sparse_bitmap_bytes",
      [](uintptr_t w, int64_t n, int64_t k, int group_rows) {
        py::gil_scoped_release nogil;
        return bitmap_pack_bytes(as_ptr<const int8_t>(w), n, k, group_rows);
      },
      py::arg("w"), py::arg("n"), py::arg("k"), py::arg("group_rows") = 0);
  m.def(
      "sparse_bitmap_group_rows",
      [](uintptr_t w, int64_t n, int64_t k) {
        py::gil_scoped_release nogil;
        return bitmap_pick_group_rows(as_ptr<const int8_t>(w), n, k);
      },
      py::arg("w"), py::arg("n"), py::arg("k"));
  m.def(
      "sparse_bitmap_pack",
      [](uintptr_t w, uintptr_t scales, int64_t n, int64_t k, int group_rows, uintptr_t out, uint64_t out_size) {
        py::gil_scoped_release nogil;
        bitmap_pack(as_ptr<const int8_t>(w), as_ptr<const float>(scales), n, k, group_rows, as_ptr<uint8_t>(out),
                    out_size);
      },
      py::arg("w"), py::arg("scales"), py::arg("n"), py::arg("k"), py::arg("group_rows"), py::arg("out"),
      py::arg("out_size"));
  m.def(
      "bitmap_dots",
      [](const std::string& kernel, uintptr_t blob, size_t size, uintptr_t xq, int64_t rows, uintptr_t dots) {
        const BitmapKernelInfo* ki = forced_kernel(kernel);
        const BitmapView v = bitmap_view(as_ptr<const uint8_t>(blob), size, false);
        if (rows < 0) throw py::value_error("bitmap_dots: negative row count");
        py::gil_scoped_release nogil;
        bitmap_dots(ki, v, as_ptr<const uint8_t>(xq), rows, as_ptr<int32_t>(dots));
      },
      py::arg("kernel"), py::arg("blob"), py::arg("size"), py::arg("xq"), py::arg("m"), py::arg("dots"),
      "Test hook: int32 dots [m][n] of one kernel; xq is [m][x_stride] uint8 (kc * 64, or K rounded up to 256 "
      "for group_rows 8).");
}

}  // namespace slimnn
