// Sparse weight formats: csr (sliced, delta-coded), bsr (small blocks) and nm (N:M bitmask), each with
// fp32 values or int8 values plus one fp32 scale per output row.
//
// Why these layouts: on a CPU a sparse matrix-vector product is bound by how many bytes of weights stream
// in and by how many separate loads fetch the activations x[k] the nonzeros touch, not by arithmetic.
//  - csr stores rows in slices of 8 ("SELL-8"): slot j of a slice holds the j-th entry of each of its 8
//    rows, so one 8-wide vector multiply serves 8 rows and no horizontal sums are needed. Rows are sorted
//    by length before slicing (the permutation is stored), so the slices waste almost no padding. Column
//    indices are deltas from the lane's previous entry, 4 or 8 bits wide; a gap wider than the delta
//    range is bridged with zero-valued filler entries. At 90% sparsity with int8 values this costs under
//    2 bytes per nonzero (value + index + fillers), under 5% of the fp32 dense bytes.
//  - bsr stores R x C blocks (1x4, 1x8, 4x1, 16x1) per block row with uint16 block-column indices: one
//    index per R*C values, and whole vectors of contiguous x (C > 1) or of one broadcast x (R > 1).
//  - nm stores, per row and per 16 columns, a 16-bit mask (exactly N bits set in every group of M) and
//    16*N/M values: fixed offsets, no index arithmetic; the mask expands the values in registers.
// Layouts do not depend on the CPU. Every section is 64-byte aligned. Integers are little-endian.
//
// Memory safety: the light view check (per call, O(rows)) validates the header, the section layout and
// the row pointers; kernels clamp decoded column indices and skip out-of-range row ids, so a corrupt blob
// gives wrong numbers, never an out-of-bounds access. full_check (once, when a module takes a blob)
// rejects such blobs: every index in range, sorted and unique, padding zero, values and scales finite.
#pragma once
#include <cstddef>
#include <cstdint>

#include "formats/header.h"

namespace slimnn {

enum class SparseValues : uint32_t {
  kF32 = 0,  // fp32 values
  kI8 = 1,   // int8 values, y[n] = scale[n] * sum q[n][k] x[k]
};

// 128 bytes. The first 32 bytes and total_bytes share PackedHeader's offsets, so parse_header validates
// the common part; the rest is format-specific.
struct SparseHeader {
  char magic[4];
  uint16_t version;
  uint16_t format;
  uint32_t header_bytes;
  uint32_t flags;
  int64_t n, k;           // output and input features
  uint32_t value_type;    // SparseValues
  uint32_t p0, p1, p2;    // csr: index_bits, lanes, 0 | bsr: R, C, 0 | nm: N, M, 0
  int64_t n_units;        // csr: slices (groups of 8 rows) | bsr: block rows | nm: rows
  int64_t n_entries;      // csr: slots | bsr: blocks | nm: 16-column chunks per row
  int64_t nnz;            // stored values that are nonzero
  uint64_t off_ptr;       // csr, bsr: uint32 [n_units + 1] entry ranges | nm: 0
  uint64_t off_perm;      // csr: int32 [n_units * 8] original row of each lane, -1 for padding | else 0
  uint64_t off_index;     // csr: deltas | bsr: uint16 [n_entries] block columns | nm: uint16 masks [n][kc]
  uint64_t total_bytes;   // the whole blob (same offset as PackedHeader::total_bytes)
  uint64_t off_values;    // fp32 or int8
  uint64_t off_scales;    // int8 only: fp32 (csr: [n_units * 8] in lane order; bsr: [n_brows * R]; nm: [n])
  uint8_t reserved[8];
};
static_assert(sizeof(SparseHeader) == 128, "the sparse header is 128 bytes");
static_assert(offsetof(SparseHeader, k) == offsetof(PackedHeader, k), "K at the common offset");
static_assert(offsetof(SparseHeader, total_bytes) == offsetof(PackedHeader, total_bytes), "common total_bytes");

constexpr int kSellLanes = 8;      // rows per csr slice
constexpr int kNmChunk = 16;       // columns per nm mask
constexpr int64_t kBsrMaxKb = 65536;  // block columns addressable by uint16

// Largest column delta of one csr entry for an index width.
inline int csr_max_delta(int index_bits) { return index_bits == 4 ? 15 : 255; }
// Block shapes with kernels (R x C).
bool bsr_block_supported(int r, int c);

struct SparseView {
  FormatId format;
  SparseValues values_type;
  int64_t n, k, nnz;
  int64_t n_units, n_entries;
  // csr: slot j of slice g is in [ptr[g], ptr[g+1]); lane l's index of slot j is a delta of index_bits
  // bits: d8 at deltas[j*8 + l], d4 the nibble (l % 2) of byte deltas[j*4 + l/2]. Values [slot][8].
  int index_bits;
  const int32_t* perm;
  const uint8_t* deltas;
  // bsr: blocks of block row b are [ptr[b], ptr[b+1]), block column bcol[i] < kb, values [block][R][C].
  int br, bc;
  int64_t kb;
  const uint16_t* bcol;
  // nm: masks [n][kc], values [n][kc][vpc]
  int nm_n, nm_m, vpc;
  int64_t kc;
  const uint16_t* masks;
  const uint32_t* ptr;    // csr, bsr
  const void* values;
  const float* scales;    // int8 only
};

// Validates a blob of any sparse format (see the note on memory safety above) and returns a view.
SparseView sparse_view(const uint8_t* blob, size_t size, bool full_check);
// The format id of a blob after the common header check (throws FormatError).
FormatId sparse_format_of(const uint8_t* blob, size_t size);

// Packing. Input: the dense matrix W (N x K, row-major) whose zeros are the pruned weights, as fp32
// (values kF32) or int8 with fp32 scales [N] (values kI8). *_bytes returns the blob size (and validates
// the arguments); *_pack writes exactly that many bytes to `out` (64-byte aligned). Throw FormatError.
uint64_t csr_pack_bytes(const void* w, SparseValues vt, int64_t n, int64_t k, int index_bits);
void csr_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int index_bits,
              uint8_t* out, uint64_t out_size);
uint64_t bsr_pack_bytes(const void* w, SparseValues vt, int64_t n, int64_t k, int r, int c);
void bsr_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int r, int c, uint8_t* out,
              uint64_t out_size);
// Every group of M columns of W must hold at most N nonzeros (zeros fill the remaining positions).
uint64_t nm_pack_bytes(SparseValues vt, int64_t n, int64_t k, int nm_n, int nm_m);
void nm_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int nm_n, int nm_m,
             uint8_t* out, uint64_t out_size);

// The inverse of every packer: writes W (N x K, fp32 or int8) and, for int8, scales [N]. Exact.
void sparse_unpack(const SparseView& v, void* w, float* scales);

}  // namespace slimnn
