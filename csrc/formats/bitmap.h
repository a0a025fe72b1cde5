// The bitmap sparse format: unstructured sparsity with int8 values, for W8A8 (dynamic int8) products.
//
// Why this layout: a sparse GEMV that fetches one activation per nonzero is capped near 4 nonzeros/ns on
// the cores we measured, which is not enough to beat a dense int8 (VNNI) GEMV by much. Here the rows are
// taken in groups of G (1 or 2) consecutive rows; per group and 64-column chunk c of K, a 64-bit mask holds
// the columns where any row of the group is nonzero (the union), and the values follow: for each chunk,
// G runs of popcount(mask) int8 values, run j holding row j's values at the mask's columns (zero where that
// row has none). With activations quantized to u8, a kernel compresses a chunk's 64 activations to the
// mask's columns once per group (AVX-512 VBMI2 vpcompressb) and multiplies them with each run (vpdpbusd):
// no per-nonzero loads, no index decoding. Bytes per dense weight: 1/(8G) (masks) + G x union density:
// G = 1: 0.225 at 90% sparsity, 0.325 at 80%; G = 2: 0.253 and 0.423, but one compress serves two rows.
// Kernel A/B on Zen 4 (same run, min of 40): G = 2 ran the GEMV 15% / 4% faster at 90% (4096 x 4096 /
// 4096 x 14336), 10% / 3% at 80%, where its values grow by 30%: the packer takes G = 2 below 15% density
// (bitmap_pick_group_rows).
//
// G = 8, the permute layout (for high sparsity): rows in blocks of 8, K in windows of 256 columns. Per
// block, window and row, a count c (uint16, in the masks section) and an entry in the values section: the
// c nonzeros' column offsets in the window (uint8, ascending) then their c values, in pieces of at most 64
// (offsets[64] values[64] offsets[64] values[64] ... offsets[c % 64] values[c % 64]). A GEMV kernel keeps
// the window's 256 u8 activations in four zmm and gathers the entry's activations with two vpermi2b
// (AVX512_VBMI; bit 7 of the offset picks the upper 128 columns), one vpdpbusd with the values: no runtime
// compress, ~25 nonzeros per step at 90%. Measured 1.7-2.0x the G = 2 GEMV at 90% (prototype in git history, commit 87a6191; docs/sparse.md);
// bytes per dense weight 2 x density + 1/128 (0.21 at 90%). Only nonzeros are stored: stored = 2 x nnz.
//
// Sections (64-byte aligned, little-endian, ISA-independent; ng = ceil(n / G) groups):
//   header   BitmapHeader (128 bytes)
//   ptr      uint32 [ng + 1]: group g's values are [ptr[g], ptr[g+1]); ptr[0] = 0, ptr[ng] = stored
//   masks    uint64 [ng][kc], kc = ceil(k / 64); bit b of masks[g][c] is column 64c + b; none at >= k
//            (G = 8: uint16 counts [ng][nw][8], nw = ceil(k / 256), rows past n count 0)
//   values   int8 [stored], per group and chunk G runs of popcount(mask) (rows past n: zeros), then
//            kBitmapValuePad zero bytes (kernels load 64 bytes at a time)
//   scales   fp32 [n]: W[r][k] = value * scales[r] (symmetric, absmax/127 of the kept weights)
//   rowsum   int32 [n]: sum of row r's values (the zero-point term of the W8A8 product)
//
// Activation rows handed to the kernels hold bitmap_x_stride(v) bytes (zeros past K): kc * 64, or the
// K rounded up to whole 256-column windows for G = 8.
//
// Memory safety: the light check (every call, O(ng)) validates the header, the section layout and the
// group pointers; kernels clamp their value pointer to the values section once per step (the pad covers
// the loads in between), so corrupt masks give wrong numbers, never an access out of bounds. The full check
// (when a module takes a blob) also demands G x popcounts(group g) == ptr[g+1] - ptr[g], no mask bit at or
// beyond k, every mask bit backed by a nonzero value of some row, rows past n zero, the nonzero count equal
// to nnz, scales finite, row sums exact and every padding byte zero (accepted blobs are canonical).
// G = 8: kernels clamp the stream pointer before every piece (a piece reads at most 128 bytes), and the
// full check demands, instead of the mask rules, counts within each window's width (0 past n), offsets
// ascending inside the window, nonzero values and counts that add up to the group pointers.
#pragma once
#include <cstddef>
#include <cstdint>

#include "formats/header.h"

namespace slimnn {

// 128 bytes; the first 32 bytes and total_bytes share PackedHeader's offsets (parse_header checks them).
struct BitmapHeader {
  char magic[4];
  uint16_t version;
  uint16_t format;
  uint32_t header_bytes;
  uint32_t flags;
  int64_t n, k;
  int64_t kc;             // 64-column chunks: ceil(k / 64)
  int64_t nnz;            // nonzero values
  uint64_t off_ptr;
  uint64_t off_masks;
  uint64_t off_values;
  uint64_t off_scales;
  uint64_t off_rowsum;
  int64_t stored;         // values stored (nonzeros and the zeros of the group runs)
  uint64_t total_bytes;   // same offset as PackedHeader::total_bytes
  uint32_t group_rows;    // G: 1, 2, or 8 (the permute layout)
  uint8_t reserved[20];   // 0
};
static_assert(sizeof(BitmapHeader) == 128, "the bitmap header is 128 bytes");
static_assert(offsetof(BitmapHeader, k) == offsetof(PackedHeader, k), "K at the common offset");
static_assert(offsetof(BitmapHeader, total_bytes) == offsetof(PackedHeader, total_bytes), "common total_bytes");

constexpr int kBitmapChunk = 64;         // columns per mask
constexpr int64_t kBitmapValuePad = 256; // zero bytes after the values: 4 chunks of 64-byte loads
constexpr int kBitmapPermRows = 8;       // G of the permute layout
constexpr int kBitmapWindow = 256;       // columns per window of the permute layout

struct BitmapView {
  int64_t n, k, kc, nnz;
  int group_rows;          // G
  int64_t groups;          // ceil(n / G)
  int64_t stored;          // values stored
  const uint32_t* ptr;     // [groups + 1]
  const uint64_t* masks;   // [groups][kc]
  const int8_t* values;    // [stored + kBitmapValuePad]
  int64_t nw;              // G = 8: windows, ceil(k / 256) (else 0)
  const uint16_t* counts;  // G = 8: [groups][nw][8] (else null; masks is null then)
  const float* scales;     // [n]
  const int32_t* rowsum;   // [n]
};

// Validates a blob (see the memory-safety note) and returns a view. Throws FormatError.
BitmapView bitmap_view(const uint8_t* blob, size_t size, bool full_check);

// Packing from a dense int8 matrix W (N x K, row-major; zeros are pruned) with fp32 scales [N], in groups
// of group_rows (1 or 2; 0 picks with bitmap_pick_group_rows). bitmap_pack_bytes returns the blob size;
// bitmap_pack writes exactly that many bytes. Throw FormatError.
uint64_t bitmap_pack_bytes(const int8_t* w, int64_t n, int64_t k, int group_rows);
void bitmap_pack(const int8_t* w, const float* scales, int64_t n, int64_t k, int group_rows, uint8_t* out,
                 uint64_t out_size);
// The default G: 8 (the permute layout) below 15% density when N >= 8, 2 below 15% when N >= 2, else 1
// (see the notes at the top; Zen 4 only).
int bitmap_pick_group_rows(const int8_t* w, int64_t n, int64_t k);
// The inverse: W (N x K int8) and scales [N]. Exact.
void bitmap_unpack(const BitmapView& v, int8_t* w, float* scales);
// Bytes per activation row the kernels read (see the note above the header struct).
inline int64_t bitmap_x_stride(const BitmapView& v) {
  return v.group_rows == kBitmapPermRows ? v.nw * kBitmapWindow : v.kc * kBitmapChunk;
}

}  // namespace slimnn
