// The K-group walk that every x86 q8 / q4 micro-kernel shares, independent of the vector width. Included by
// x86_avx2_common.h and x86_avx512_common.h (inside the ISA file's own namespace, ODR-safe) after their
// zero(V&) overloads for the vector types.
// (not a header guard: included once per ISA translation unit, inside a namespace)

// End of the step range of a group that starts at step k0: gk steps, at most kn.
inline int64_t steps_end(int64_t k0, int64_t gk, int64_t kn) { return k0 + gk < kn ? k0 + gk : kn; }

// Every element of an array of accumulators (any rank) to zero.
template <typename T, size_t N>
inline void zero(T (&a)[N]) {
  for (T& x : a) zero(x);
}

// For each group g of n_groups (gk steps each, kn steps in all): block(g, k0, k1, acc) into zeroed
// accumulators of type Acc, then fn(g, acc). All of it inlines: the same loop as written out per kernel.
template <typename Acc, typename Block, typename Fn>
inline void for_each_group(int64_t n_groups, int64_t gk, int64_t kn, Block&& block, Fn&& fn) {
  for (int64_t g = 0; g < n_groups; ++g) {
    Acc acc;
    zero(acc);
    const int64_t k0 = g * gk;
    block(g, k0, steps_end(k0, gk, kn), acc);
    fn(g, acc);
  }
}
