// One bind_<family>(m) per kernel family, each in its own bind_<family>.cc; bind_families calls them all.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>

namespace slimnn {

template <typename T>
T* as_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

void bind_families(pybind11::module_& m);

}  // namespace slimnn
