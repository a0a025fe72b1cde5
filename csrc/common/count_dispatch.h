// A micro-kernel's row or panel count as a template argument: with_count<N>(n, f) calls
// f(std::integral_constant<int, c>) with c = n for n in [1, N - 1] and c = N otherwise, exactly the
// `switch (n) { case 1: ... default: <N> }` the ISA files would write by hand, once per kernel call (a
// compare chain outside the kernel's loops). f is usually a generic lambda: [&](auto MR) { k<MR()>(...); }.
#pragma once
#include <type_traits>

namespace slimnn {

template <int N, int I = 1, typename F>
inline void with_count(int n, F&& f) {
  if constexpr (I >= N) {
    f(std::integral_constant<int, N>{});
  } else {
    if (n == I)
      f(std::integral_constant<int, I>{});
    else
      with_count<N, I + 1>(n, static_cast<F&&>(f));
  }
}

// Rows and panels at once: f(c1, c2) for with_count<N1>(n1) and with_count<N2>(n2).
template <int N1, int N2, typename F>
inline void with_counts(int n1, int n2, F&& f) {
  with_count<N1>(n1, [&](auto c1) { with_count<N2>(n2, [&](auto c2) { f(c1, c2); }); });
}

}  // namespace slimnn
