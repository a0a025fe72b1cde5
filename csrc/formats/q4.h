// q4: 4-bit weights, one scale per group of `group_size` inputs along K (or per output channel), either
// symmetric (code 8 is zero), with one integer zero point per group, or with one float zero point per group
// (w = scale * (code - z), z a float: a group's minimum need not lie on a code, as in llama.cpp's Q4_1 and
// K-quants, whose w = d * q + m is z = -m / d).
//
// Canonical form (what quantizers produce and packing is derived from; ISA-independent):
//   codes  uint8 [N][K], each in [0, 15]
//   scales [n_groups][N] in fp32, fp16 or bf16 (the dtype is kept, so unpack returns what was packed)
//   zeros  uint8 [n_groups][N] in [0, 15], or float zeros [n_groups][N] in the scale dtype (any finite
//          value), or none (symmetric: every zero point is 8)
//   W[n][k] = scales[g][n] * (codes[n][k] - zeros[g][n]),  g = k / group_size.
// Float zero points (header zero mode 2; blobs of modes 0 and 1 are unchanged, and readers that predate
// mode 2 refuse it by name) reuse the symmetric kernels unchanged: W = s (u - 8) + o with the offset
// o[g][n] = s (8 - z), so the kernels compute x . s (u - 8) exactly as for a symmetric blob (colsum and comp
// hold the symmetric part) and sum_g o[g][n] * (sum_{k in g} x[m][k]) is added after them: by the op driver,
// per task (every ISA path gets it), or inside the kernels flagged fz_fused (kernels/q4gemm/q4gemm.h), which
// compute o from the streamed scale and zero point (the same bits) and so never read the fp32 offsets.
//
// Why this layout: W is stored as panels of 16 output columns; inside a panel K advances in steps of 8 and
// each step is 64 bytes: byte c*4 + j holds k = 8s + j in its low nibble and k = 8s + 4 + j in its high
// nibble (column c, j in 0..3). One 64-byte load, `and 0x0F` and `shift 4, and 0x0F` thus give two
// [16 columns][4 k] byte blocks, the same order as q8 (formats/q8.h) and exactly the operands of two
// AVX-512 VNNI vpdpbusd; AVX2 uses the 16-byte quarters (4 columns each). Codes stay unsigned in the
// kernels (u8 activations x codes in 0..15 are valid vpdpbusd operands), and the zero point is removed
// once per group in int32: sum_k a_k (u_k - z) = dot(a, u) - z * sum_k a_k. Scales are kept in their
// canonical dtype: at M = 1 the kernels stream weights from DRAM, and fp16 scales cut the bytes per
// weight from 0.625 to 0.5625 at group size 32. K is padded to a multiple of 8 and N to a multiple of 16
// with code 0; activations are zero there, so padding adds nothing. K need not be a multiple of the group
// size: the last group is then shorter (no extra memory and no accuracy cost; only a partial group step).
#pragma once
#include <cstdint>

#include "formats/header.h"

namespace slimnn {

// Scale dtypes, as stored in the header (stable values).
enum class ScaleDtype : uint8_t {
  kF32 = 0,   // IEEE float32
  kF16 = 1,   // IEEE float16
  kBF16 = 2,  // bfloat16 (top half of a float32)
};

// The q4 fields kept in PackedHeader::reserved (24 bytes; q8 leaves them zero).
struct Q4HeaderExt {
  uint64_t off_zeros;   // uint8 [np/16][n_groups][16], or 0 when symmetric
  uint8_t scale_dtype;  // ScaleDtype
  uint8_t asymmetric;   // Q4ZeroMode: 0 symmetric, 1 integer zero points, 2 float zero points
  uint8_t pad[14];      // zero
};
static_assert(sizeof(Q4HeaderExt) == 24, "the q4 header extension fills PackedHeader::reserved exactly");

// How zero points are stored (header byte Q4HeaderExt::asymmetric; stable values).
enum Q4ZeroMode : int {
  kQ4Symmetric = 0,  // none: zero point 8
  kQ4IntZero = 1,    // uint8 [np/16][n_groups][16] in [0, 15]
  kQ4FloatZero = 2,  // scale dtype [np/16][n_groups][16], finite (padding columns 0)
};

// Scales and zero points are stored panel by panel: [np/16][n_groups][16], so the kernels, which sweep K
// for one block of panels at a time, read them as one more sequential stream beside the weights (a
// [n_groups][np] layout would be a strided walk, one cache line per group, that the prefetchers miss).
inline int64_t q4_sz_index(int64_t g, int64_t col, int64_t n_groups) { return (col / 16) * n_groups * 16 + g * 16 + col % 16; }

struct Q4View {
  int64_t n, k, np, kp, group_size, n_groups;
  ScaleDtype scale_dtype;
  bool asymmetric;
  const uint8_t* w;       // [np/16][kp/8][64] (see above)
  const void* scales;     // [np/16][n_groups][16], scale_dtype (q4_sz_index)
  const uint8_t* zeros;   // [np/16][n_groups][16] in [0, 15]; null when symmetric (all 8) or float zeros
  const void* fzeros;     // float zero points [np/16][n_groups][16] in scale_dtype, or null (zero mode 2)
  const float* offsets;   // zero mode 2: s (8 - z) per group and column, fp32 [np/16][n_groups][16] (derived at
                          // pack time from scales and fzeros, checked by full_check), else null
  const int32_t* colsum;  // [np] when n_groups == 1, else null: sum over real k of (u - z) (z = 8 for mode 2)
  const float* comp;      // [np]: sum_g scale[g][n] * sum_{k in g} (u - z), the row sum of W (mode 2: of
                          // its symmetric part s (u - 8), the part the kernels compute)
};

// Largest K: |a| <= 255 and |u - z| <= 15, so K * 255 * 15 * 2 (raw dot plus the zero-point term) must
// stay below 2^31. 65536 leaves a 4x margin and matches q8.
constexpr int64_t kQ4MaxK = 65536;

// Group size: a positive multiple of 32 (a whole number of 8-k steps and of 32-byte cache half-lines),
// or 0 for per channel (one group of kp).
// zero_mode: a Q4ZeroMode.
uint64_t q4_blob_bytes(int64_t n, int64_t k, int64_t group_size, ScaleDtype scale_dtype, int zero_mode);

// Validates `blob` and returns a view into it (no copy). The header check (O(1)) makes every later read
// in bounds; `full_check` also verifies codes and zeros (nibbles of padding are 0, zeros <= 15), that
// scales are finite and that colsum/comp match the weights (O(N*K): once, when a module takes a blob).
Q4View q4_view(const uint8_t* blob, size_t size, bool full_check);

// Packs the canonical form (see above). zeros (uint8) and fzeros (float zero points in the scale dtype) are
// null for symmetric; at most one is given. Writes q4_blob_bytes(...) bytes.
// Throws FormatError for a code or zero point above 15 or a non-finite scale or float zero point.
void q4_pack(const uint8_t* codes, const void* scales, const uint8_t* zeros, const void* fzeros, int64_t n,
             int64_t k, int64_t group_size, ScaleDtype scale_dtype, uint8_t* out);

// The inverse: codes [N][K], scales [n_groups][N] in the blob's scale dtype, zeros [n_groups][N] (only
// written when the blob has integer zero points), fzeros [n_groups][N] in the scale dtype (only written when
// it has float ones). Exact.
void q4_unpack(const Q4View& v, uint8_t* codes, void* scales, uint8_t* zeros, void* fzeros);

// Scale conversions shared by packing and the portable kernels (exact for fp32 <- fp16/bf16).
float q4_scale_to_f32(const void* scales, ScaleDtype dtype, int64_t index);

}  // namespace slimnn
