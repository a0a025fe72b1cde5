// The bitmap sparse format: unstructured sparsity with int8 values, for W8A8 (dynamic int8) products.
//
// Why this layout: a sparse GEMV that fetches one activation per nonzero is capped near 4 nonzeros/ns on
// the cores we measured, which is not enough to beat a dense int8 (VNNI) GEMV by much. Here each output row
// n keeps, per 64-column chunk c of K, a 64-bit mask of its nonzero positions, and its nonzero int8 values
// packed contiguously in column order. With activations quantized to u8, a kernel loads the 64 activations
// of a chunk once and, per row, compresses them to the mask's positions (AVX-512 VBMI2 vpcompressb), then
// multiplies them with the next popcount(mask) values (vpdpbusd): no per-nonzero loads, no index decoding.
// Bytes per dense weight: 1/8 (mask) + density (values): 0.225 at 90% sparsity, 0.325 at 80%.
//
// Sections (64-byte aligned, little-endian, ISA-independent):
//   header   BitmapHeader (128 bytes)
//   ptr      uint32 [n + 1]: row r's values are [ptr[r], ptr[r+1]); ptr[0] = 0, ptr[n] = nnz
//   masks    uint64 [n][kc], kc = ceil(k / 64); bit b of masks[r][c] is column 64c + b; none at >= k
//   values   int8 [nnz] (all nonzero), then kBitmapValuePad zero bytes (kernels load 64 bytes at a time)
//   scales   fp32 [n]: W[r][k] = values * scales[r] (symmetric, absmax/127 of the kept weights)
//   rowsum   int32 [n]: sum of row r's values (the zero-point term of the W8A8 product)
//
// Memory safety: the light check (every call, O(n)) validates the header, the section layout and the row
// pointers; kernels clamp their value pointer to the values section once per 4 chunks (the pad covers the
// loads in between), so corrupt masks give wrong numbers, never an access out of bounds. The full check
// (when a module takes a blob) also demands popcount(masks of row r) == ptr[r+1] - ptr[r], no mask bit at
// or beyond k, values nonzero, scales finite and positive, rowsum exact.
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
  int64_t nnz;            // stored values, all nonzero
  uint64_t off_ptr;
  uint64_t off_masks;
  uint64_t off_values;
  uint64_t off_scales;
  uint64_t off_rowsum;
  uint64_t reserved0;     // 0
  uint64_t total_bytes;   // same offset as PackedHeader::total_bytes
  uint8_t reserved[24];   // 0
};
static_assert(sizeof(BitmapHeader) == 128, "the bitmap header is 128 bytes");
static_assert(offsetof(BitmapHeader, k) == offsetof(PackedHeader, k), "K at the common offset");
static_assert(offsetof(BitmapHeader, total_bytes) == offsetof(PackedHeader, total_bytes), "common total_bytes");

constexpr int kBitmapChunk = 64;         // columns per mask
constexpr int64_t kBitmapValuePad = 256; // zero bytes after the values: 4 chunks of 64-byte loads

struct BitmapView {
  int64_t n, k, kc, nnz;
  const uint32_t* ptr;     // [n + 1]
  const uint64_t* masks;   // [n][kc]
  const int8_t* values;    // [nnz + kBitmapValuePad]
  const float* scales;     // [n]
  const int32_t* rowsum;   // [n]
};

// Validates a blob (see the memory-safety note) and returns a view. Throws FormatError.
BitmapView bitmap_view(const uint8_t* blob, size_t size, bool full_check);

// Packing from a dense int8 matrix W (N x K, row-major; zeros are pruned) with fp32 scales [N].
// bitmap_pack_bytes returns the blob size; bitmap_pack writes exactly that many bytes. Throw FormatError.
uint64_t bitmap_pack_bytes(const int8_t* w, int64_t n, int64_t k);
void bitmap_pack(const int8_t* w, const float* scales, int64_t n, int64_t k, uint8_t* out, uint64_t out_size);
// The inverse: W (N x K int8) and scales [N]. Exact.
void bitmap_unpack(const BitmapView& v, int8_t* w, float* scales);

}  // namespace slimnn
