// The portable AMX emulation's entry points beyond the kernel table (amx_emu.cc): a test hook for single
// tile instructions, so tests can check the emulation's semantics (x86_amx.h) against a model in Python.
#pragma once
#include <cstdint>

namespace slimnn {

// One tile instruction on the emulation: C (rows x colsb_c bytes at c, stride ldc) is loaded, then
// op 0: tdpbusd (A u8, B s8), 1: tdpbssd (A s8, B s8), 2: tdpbf16ps (A, B bf16 pairs, C fp32) with A rows x
// colsb_a bytes at a (stride lda) and B colsb_a / 4 rows x colsb_c bytes at b (stride ldb); C is stored back.
// Returns false (touching nothing) for shapes palette 1 cannot hold.
bool amxemu_tile_op(int op, int rows, int colsb_a, int colsb_c, const void* a, int64_t lda, const void* b,
                    int64_t ldb, void* c, int64_t ldc);

}  // namespace slimnn
