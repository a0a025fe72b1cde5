// Helpers of every vector spmm kernel (x86 and NEON): included once per ISA translation unit, inside its
// namespace, before x86_gemv.h / x86_batched.h (not a header guard, on purpose).
inline int64_t clampi(int64_t v, int64_t hi) { return v < hi ? v : hi; }
inline bool row_ok(int64_t row, int64_t n) { return static_cast<uint64_t>(row) < static_cast<uint64_t>(n); }
inline float row_scale(const SparseView& w, int64_t i) { return w.scales ? w.scales[i] : 1.0f; }

// The block shapes of formats/sparse.h as types: a kernel per shape is an overload on BsrShape<R, C>, and
// with_bsr_shape(w, f) calls f(BsrShape<R, C>()) for the view's shape (the one branch on it).
template <int R, int C>
struct BsrShape {};
template <typename F>
inline void with_bsr_shape(const SparseView& w, F&& f) {
  if (w.br == 16) return f(BsrShape<16, 1>());
  if (w.br == 4) return f(BsrShape<4, 1>());
  if (w.bc == 4) return f(BsrShape<1, 4>());
  return f(BsrShape<1, 8>());
}
