// The exported spmm kernels of one x86 ISA file, expanded from kernels.inc (so the list is written once).
// Include at the end of the ISA file, inside namespace slimnn, after defining SLIMNN_SPMM_ISA (the file's ISA
// namespace) and SLIMNN_SPMM_IF_<isa>(kind, name, gemv) as SLIMNN_SPMM_DEFINE(kind, name, gemv); lines of
// the other ISAs expand to nothing. The ISA namespace must define csr_m1, bsr_m1 (one overload per
// BsrShape) and nm_other_m1 (N:M but 2:4 / 4:8) for M = 1, and csr_batched / bsr_batched / nm_batched for
// M = MT, each a template over the stored value type (x86_gemv.h and x86_batched.h define most of them).

namespace SLIMNN_SPMM_ISA {
namespace {
template <SpmmKind K, bool kGemv>
void entry(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) {
  using T = typename std::conditional<spmm_kind_i8(K), int8_t, float>::type;
  if (spmm_kind_csr(K)) return kGemv ? csr_m1<T>(w, u0, u1, xt, yt) : csr_batched<T>(w, u0, u1, xt, yt);
  if (spmm_kind_bsr(K)) {
    return with_bsr_shape(w, [&](auto shape) {
      return kGemv ? bsr_m1<T>(w, u0, u1, xt, yt, shape) : bsr_batched<T>(w, u0, u1, xt, yt, shape);
    });
  }
  if (!kGemv) return nm_batched<T>(w, u0, u1, xt, yt);
  if (w.vpc == 8 && w.nm_m <= 8) return nm8_gemv<T>(w, u0, u1, xt, yt);  // 2:4, 4:8
  return nm_other_m1<T>(w, u0, u1, xt, yt);
}
}  // namespace
}  // namespace SLIMNN_SPMM_ISA

#define SLIMNN_SPMM_DEFINE(kind, name, gemv)                                            \
  void name(const SparseView& w, int64_t u0, int64_t u1, const float* xt, float* yt) { \
    SLIMNN_SPMM_ISA::entry<SpmmKind::kind, gemv>(w, u0, u1, xt, yt);                    \
  }
#ifndef SLIMNN_SPMM_IF_avx2
#define SLIMNN_SPMM_IF_avx2(kind, name, gemv)
#endif
#ifndef SLIMNN_SPMM_IF_avx512
#define SLIMNN_SPMM_IF_avx512(kind, name, gemv)
#endif
#define SLIMNN_SPMM_IF_portable(kind, name, gemv)
#define SLIMNN_SPMM_KERNEL(kind, isa_bit, isa_word, name, mt, gemv, xpad) SLIMNN_SPMM_IF_##isa_word(kind, name, gemv)
#include "kernels/spmm/kernels.inc"
#undef SLIMNN_SPMM_KERNEL
#undef SLIMNN_SPMM_IF_portable
#undef SLIMNN_SPMM_IF_avx512
#undef SLIMNN_SPMM_IF_avx2
#undef SLIMNN_SPMM_DEFINE
