// The AMX kernel's emulated twin, qgemm_q8_u8_32x64__amxemu: amx_q8.h compiled over the portable tile
// emulation (common/simd/x86_amx.h with SLIMNN_AMX_EMULATE), no ISA flags. Test-only: it is listed apart
// from kernels.inc (emulated_kernel_table, select.cc), so automatic dispatch never sees it; tests force it by
// name to check the AMX kernel's packing, tails, threading and epilogues on any CPU. Slow (scalar tiles).
#include <cmath>
#include <cstdlib>
#include <cstring>

#include "kernels/qgemm/amx_emu.h"
#include "kernels/qgemm/qgemm.h"

#define SLIMNN_AMX_EMULATE 1

namespace slimnn {
namespace amxemu {
namespace {

#include "common/simd/x86_amx.h"
#include "common/simd/x86_amx_blocks.h"
#include "kernels/qgemm/amx_q8.h"

}  // namespace
}  // namespace amxemu

SLIMNN_AMX_Q8_EXPORTS(amxemu, qgemm_q8_u8_32x64__amxemu)

bool amxemu_tile_op(int op, int rows, int colsb_a, int colsb_c, const void* a, int64_t lda, const void* b,
                    int64_t ldb, void* c, int64_t ldc) {
  using namespace amxemu;
  if (op < 0 || op > 2 || rows < 1 || rows > kTileMaxRows || colsb_a < 4 || colsb_a > kTileMaxColsb ||
      colsb_a % 4 != 0 || colsb_c < 4 || colsb_c > kTileMaxColsb || colsb_c % 4 != 0)
    return false;
  Tiles t;
  TileConfig cfg = tile_config();
  set_tile(cfg, 0, rows, colsb_c);
  set_tile(cfg, 1, rows, colsb_a);
  set_tile(cfg, 2, colsb_a / 4, colsb_c);
  t.configure(cfg);
  t.load<0>(c, ldc);
  t.load<1>(a, lda);
  t.load<2>(b, ldb);
  if (op == 0) t.dpbusd<0, 1, 2>();
  if (op == 1) t.dpbssd<0, 1, 2>();
  if (op == 2) t.dpbf16ps<0, 1, 2>();
  t.store<0>(c, ldc);
  t.release();
  return true;
}

}  // namespace slimnn
