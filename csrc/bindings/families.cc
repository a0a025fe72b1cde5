#include "bindings/bindings.h"

namespace slimnn {

// Add one line per family: declare its binder here and call it below.
void bind_lowrank(pybind11::module_& m);
void bind_int4(pybind11::module_& m);
void bind_sparse(pybind11::module_& m);
void bind_bitmap(pybind11::module_& m);
void bind_attention(pybind11::module_& m);
void bind_conv(pybind11::module_& m);

void bind_families(pybind11::module_& m) {
  bind_lowrank(m);
  bind_int4(m);
  bind_sparse(m);
  bind_bitmap(m);
  bind_attention(m);
  bind_conv(m);
}

}  // namespace slimnn
