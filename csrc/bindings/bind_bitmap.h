// The bitmap format's entries that the generic sparse bindings (bind_sparse.cc) forward to, so that
// _C.sparse_info / sparse_unpack / sparse_linear take every sparse blob, bitmap included.
#pragma once
#include <pybind11/pybind11.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace slimnn {

// True if `size` bytes at `blob` start with a header whose format id is the bitmap's (not validated).
bool is_bitmap_blob(uintptr_t blob, size_t size);
// The fields every sparse blob's info dict (bitmap_info, bind_sparse.cc's info) starts with, in its order.
pybind11::dict sparse_info_dict(const char* format, const char* values, int64_t n, int64_t k, int64_t nnz,
                                int64_t units, int64_t entries);
// The dict's byte split of the blob: its total, then the values, index, scales and header-side sections.
void put_section_bytes(pybind11::dict& d, uint64_t total, uint64_t values, uint64_t index, uint64_t scales,
                       uint64_t meta);
pybind11::dict bitmap_info(uintptr_t blob, size_t size, bool full_check);
void bitmap_unpack_to(uintptr_t blob, size_t size, uintptr_t w, uintptr_t scales);
std::string bitmap_linear_call(uintptr_t x, int64_t rows, int64_t k, int64_t ldx, uintptr_t blob, size_t size,
                               uintptr_t bias, uintptr_t y, int64_t n, int64_t ldy, int nthreads,
                               const std::string& kernel);

}  // namespace slimnn
