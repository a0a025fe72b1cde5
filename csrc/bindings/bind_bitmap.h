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
pybind11::dict bitmap_info(uintptr_t blob, size_t size, bool full_check);
void bitmap_unpack_to(uintptr_t blob, size_t size, uintptr_t w, uintptr_t scales);
std::string bitmap_linear_call(uintptr_t x, int64_t rows, int64_t k, int64_t ldx, uintptr_t blob, size_t size,
                               uintptr_t bias, uintptr_t y, int64_t n, int64_t ldy, int nthreads,
                               const std::string& kernel);

}  // namespace slimnn
