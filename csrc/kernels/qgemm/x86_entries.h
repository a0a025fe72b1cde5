// The exported micro-kernels of one x86 q8 or q4 ISA file, defined from its family's kernels.inc (so each
// kernel's name, rows and panels are written once). Include at the end of the ISA file, inside namespace
// slimnn, after defining
//   SLIMNN_X86_ISA             the file's ISA namespace, which provides the templates the kinds call:
//                              dyn<MR, NP>, dot<MR, NP> (kQ8Dyn / kQ4Dyn), wo<MR, NP> (kQ8Wo / kQ4Wo)
//   SLIMNN_X86_KERNELS         "kernels/qgemm/kernels.inc" or "kernels/q4gemm/kernels.inc"
//   SLIMNN_X86_IF_<isa>(kind, name, mr, np)  as SLIMNN_X86_##kind(name, mr, np) for the file's ISA word;
// the portable lines expand to nothing (an ISA file is built with only its own SLIMNN_BUILT_* defined).
// Each entry turns its runtime (mr, panels) into template arguments with with_counts<mr, np>
// (common/count_dispatch.h); panel kernels (kQ8WoPanel / kQ4WoPanel) live in kernels/wogemm.
#define SLIMNN_X86_ENTRY(name, mrx, npx, fn, params, args)                                   \
  void name params {                                                                         \
    with_counts<mrx, npx>(mr, panels, [&](auto MR, auto NP) { SLIMNN_X86_ISA::fn<MR(), NP()> args; }); \
  }
// dyn and its dot hook, wo: over weights of type Wt and epilogue Ep (q8: int8_t, Q8Epilogue; q4: uint8_t, Q4Epilogue).
#define SLIMNN_X86_DYN(name, mrx, npx, Wt, Ep, dot_params, dot_args)                                          \
  SLIMNN_X86_ENTRY(name, mrx, npx, dyn,                                                                         \
                   (int mr, int panels, const uint8_t* a, int64_t lda, const Wt* w, int64_t kp, const Ep& e),    \
                   (a, lda, w, kp, e))                                                                          \
  SLIMNN_X86_ENTRY(name##_dot, mrx, npx, dot, dot_params, dot_args)
#define SLIMNN_X86_WO(name, mrx, npx, Wt, Ep)                                                                   \
  SLIMNN_X86_ENTRY(name, mrx, npx, wo,                                                                          \
                   (int mr, int panels, const float* x, int64_t ldx, const Wt* w, int64_t kp, const Ep& e),      \
                   (x, ldx, w, kp, e))
#define SLIMNN_X86_kQ8Dyn(name, mrx, npx)                                                                      \
  SLIMNN_X86_DYN(name, mrx, npx, int8_t, Q8Epilogue,                                                           \
                 (int mr, int panels, const uint8_t* a, int64_t lda, const int8_t* w, int64_t kp, int32_t* out, \
                  int64_t ldo),                                                                                 \
                 (a, lda, w, kp, out, ldo))
#define SLIMNN_X86_kQ4Dyn(name, mrx, npx)                                                                 \
  SLIMNN_X86_DYN(name, mrx, npx, uint8_t, Q4Epilogue,                                                     \
                 (int mr, int panels, const uint8_t* a, int64_t lda, const uint8_t* w, int64_t kp,        \
                  const Q4Epilogue& e, int32_t* out, int64_t ldo),                                        \
                 (a, lda, w, kp, e, out, ldo))
#define SLIMNN_X86_kQ8Wo(name, mrx, npx) SLIMNN_X86_WO(name, mrx, npx, int8_t, Q8Epilogue)
#define SLIMNN_X86_kQ4Wo(name, mrx, npx) SLIMNN_X86_WO(name, mrx, npx, uint8_t, Q4Epilogue)
#define SLIMNN_X86_kQ8WoPanel(name, mrx, npx)
#define SLIMNN_X86_kQ4WoPanel(name, mrx, npx)
#define SLIMNN_X86_IF_portable(kind, name, mrx, npx)
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mrx, npx, gemv) SLIMNN_X86_IF_##isa_word(kind, name, mrx, npx)
#include SLIMNN_X86_KERNELS
#undef SLIMNN_KERNEL
#undef SLIMNN_X86_IF_portable
#undef SLIMNN_X86_kQ4WoPanel
#undef SLIMNN_X86_kQ8WoPanel
#undef SLIMNN_X86_kQ4Wo
#undef SLIMNN_X86_kQ4Dyn
#undef SLIMNN_X86_kQ8Wo
#undef SLIMNN_X86_kQ8Dyn
#undef SLIMNN_X86_WO
#undef SLIMNN_X86_DYN
#undef SLIMNN_X86_ENTRY
