// The exported panel kernels of one wogemm file (kQ8WoPanel / kQ4WoPanel lines of the q8 and q4 kernels.inc),
// each run_task over the file's dequantizer of its format. Include at the end of the file, inside namespace
// slimnn, after defining SLIMNN_WO_ISA (the file's namespace, which includes panel_impl.h) and
// SLIMNN_WO_IF_<isa>(kind, name) as SLIMNN_WO_##kind(name) for the file's ISA word; lines of the other ISAs
// expand to nothing.
#define SLIMNN_WO_kQ8WoPanel(name) \
  void name(const Q8View& w, const WoPanelTask& t) { SLIMNN_WO_ISA::run_task(w, t, SLIMNN_WO_ISA::dequant_q8); }
#define SLIMNN_WO_kQ4WoPanel(name) \
  void name(const Q4View& w, const WoPanelTask& t) { SLIMNN_WO_ISA::run_task(w, t, SLIMNN_WO_ISA::dequant_q4); }
#define SLIMNN_WO_kQ8Dyn(name)
#define SLIMNN_WO_kQ8Wo(name)
#define SLIMNN_WO_kQ4Dyn(name)
#define SLIMNN_WO_kQ4Wo(name)
#ifndef SLIMNN_WO_IF_portable
#define SLIMNN_WO_IF_portable(kind, name)
#endif
#ifndef SLIMNN_WO_IF_avx2
#define SLIMNN_WO_IF_avx2(kind, name)
#endif
#ifndef SLIMNN_WO_IF_avx512
#define SLIMNN_WO_IF_avx512(kind, name)
#endif
#define SLIMNN_WO_IF_avx512vnni(kind, name)
#ifndef SLIMNN_WO_IF_amx
#define SLIMNN_WO_IF_amx(kind, name)
#endif
#define SLIMNN_WO_IF_neon(kind, name)
#define SLIMNN_WO_IF_dotprod(kind, name)
#define SLIMNN_WO_IF_i8mm(kind, name)
#define SLIMNN_KERNEL(kind, isa_bit, isa_word, name, mr, np, gemv) SLIMNN_WO_IF_##isa_word(kind, name)
#include "kernels/qgemm/kernels.inc"
#include "kernels/q4gemm/kernels.inc"
#undef SLIMNN_KERNEL
#undef SLIMNN_WO_IF_i8mm
#undef SLIMNN_WO_IF_dotprod
#undef SLIMNN_WO_IF_neon
#undef SLIMNN_WO_IF_amx
#undef SLIMNN_WO_IF_avx512vnni
#undef SLIMNN_WO_IF_avx512
#undef SLIMNN_WO_IF_avx2
#undef SLIMNN_WO_IF_portable
#undef SLIMNN_WO_kQ4Wo
#undef SLIMNN_WO_kQ4Dyn
#undef SLIMNN_WO_kQ8Wo
#undef SLIMNN_WO_kQ8Dyn
#undef SLIMNN_WO_kQ4WoPanel
#undef SLIMNN_WO_kQ8WoPanel
