// q8: int8 weights with fp32 scales, per output channel or per group of `group_size` along K.
//
// Why this layout: the weight matrix W (N x K) is stored as panels of 16 output columns; inside a panel,
// K advances in steps of 4 and each step holds 16 columns x 4 consecutive k (64 bytes). One 64-byte load
// is then exactly the operand of AVX-512 VNNI's vpdpbusd (16 lanes x 4 byte products), two 32-byte loads
// feed AVX2, and the same bytes serve the float (weight-only) kernels. The layout does not depend on the
// CPU: a blob packed on one machine runs on any other. K is padded to a multiple of 4 and N to a multiple
// of 16 with zero weights, which add nothing to any dot product.
#pragma once
#include <cstdint>
#include <vector>

#include "formats/header.h"

namespace slimnn {

struct Q8View {
  int64_t n, k, np, kp, group_size, n_groups;
  const int8_t* w;        // [np/16][kp/4][16][4]
  const float* scales;    // [n_groups][np]
  const int32_t* colsum;  // [n_groups][np]
  const float* comp;      // [np]
};

// Largest K for which the integer dot products (|a - zp| <= 255, |w| <= 128) cannot overflow int32.
constexpr int64_t kQ8MaxK = 65536;

// Validates `blob` and returns a view into it (no copy). The header check (O(1)) makes every later read
// in bounds; `full_check` also verifies that scales are finite, padding is zero and column sums and
// compensation terms match the weights and scales, so only canonical blobs (as q8_pack writes them) pass
// (O(N*K): done once when a module takes a blob, not per call).
Q8View q8_view(const uint8_t* blob, size_t size, bool full_check);

// Bytes of the blob for these dimensions (validates them; throws FormatError).
uint64_t q8_blob_bytes(int64_t n, int64_t k, int64_t group_size);

// Packs the canonical form: q (int8, N x K row-major) and scales (fp32, n_groups x N row-major),
// group_size 0 meaning per channel. Writes q8_blob_bytes(...) bytes to `out` (64-byte aligned).
void q8_pack(const int8_t* q, const float* scales, int64_t n, int64_t k, int64_t group_size, uint8_t* out);

// The inverse: writes q (N x K) and scales (n_groups x N). Exact.
void q8_unpack(const Q8View& v, int8_t* q, float* scales);

}  // namespace slimnn
