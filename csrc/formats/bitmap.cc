#include "formats/bitmap.h"

#include <cmath>
#include <cstring>
#include <string>

#include "formats/q8.h"

namespace slimnn {
namespace {

[[noreturn]] void fail(const std::string& what) { throw FormatError("slimnn bitmap sparse weights: " + what); }

std::string s(int64_t v) { return std::to_string(v); }

constexpr int64_t kMaxDim = int64_t{1} << 24;

struct Layout {
  int64_t kc;
  uint64_t off_ptr, off_masks, off_values, off_scales, off_rowsum, total;
};

Layout layout(int64_t n, int64_t k, int64_t nnz) {
  Layout l;
  l.kc = (k + kBitmapChunk - 1) / kBitmapChunk;
  l.off_ptr = align64(sizeof(BitmapHeader));
  l.off_masks = align64(l.off_ptr + uint64_t(n + 1) * 4);
  l.off_values = align64(l.off_masks + uint64_t(n) * uint64_t(l.kc) * 8);
  l.off_scales = align64(l.off_values + uint64_t(nnz) + kBitmapValuePad);
  l.off_rowsum = align64(l.off_scales + uint64_t(n) * 4);
  l.total = align64(l.off_rowsum + uint64_t(n) * 4);
  return l;
}

void check_dims(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) fail("N and K must be positive, got N=" + s(n) + ", K=" + s(k));
  // K is bounded like q8's so that the u8 x s8 dot products cannot overflow int32.
  if (n > kMaxDim || k > kQ8MaxK)
    fail("shape too large: N=" + s(n) + " (max " + s(kMaxDim) + "), K=" + s(k) + " (max " + s(kQ8MaxK) + ")");
}

int64_t count_nnz(const int8_t* w, int64_t n, int64_t k) {
  int64_t nnz = 0;
  for (int64_t i = 0; i < n * k; ++i) nnz += w[i] != 0;
  if (nnz > int64_t{0xFFFFFFFF} - 2 * kBitmapValuePad) fail("more than 2^32 nonzeros (row pointers are 32-bit)");
  return nnz;
}

}  // namespace

uint64_t bitmap_pack_bytes(const int8_t* w, int64_t n, int64_t k) {
  check_dims(n, k);
  if (w == nullptr) fail("null weight pointer");
  return layout(n, k, count_nnz(w, n, k)).total;
}

void bitmap_pack(const int8_t* w, const float* scales, int64_t n, int64_t k, uint8_t* out, uint64_t out_size) {
  check_dims(n, k);
  if (w == nullptr || scales == nullptr || out == nullptr) fail("null pointer");
  for (int64_t r = 0; r < n; ++r)
    if (!std::isfinite(scales[r])) fail("non-finite scale at row " + s(r));
  const int64_t nnz = count_nnz(w, n, k);
  const Layout l = layout(n, k, nnz);
  if (out_size != l.total) fail("output buffer has " + s(int64_t(out_size)) + " bytes, the blob needs " + s(int64_t(l.total)));
  std::memset(out, 0, l.total);
  BitmapHeader h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kMagic, 4);
  h.version = kFormatVersion;
  h.format = static_cast<uint16_t>(FormatId::kBitmap);
  h.header_bytes = sizeof(BitmapHeader);
  h.n = n, h.k = k, h.kc = l.kc, h.nnz = nnz;
  h.off_ptr = l.off_ptr, h.off_masks = l.off_masks, h.off_values = l.off_values;
  h.off_scales = l.off_scales, h.off_rowsum = l.off_rowsum, h.total_bytes = l.total;
  std::memcpy(out, &h, sizeof h);
  uint32_t* ptr = reinterpret_cast<uint32_t*>(out + l.off_ptr);
  uint64_t* masks = reinterpret_cast<uint64_t*>(out + l.off_masks);
  int8_t* vals = reinterpret_cast<int8_t*>(out + l.off_values);
  float* sc = reinterpret_cast<float*>(out + l.off_scales);
  int32_t* rs = reinterpret_cast<int32_t*>(out + l.off_rowsum);
  uint32_t j = 0;
  for (int64_t r = 0; r < n; ++r) {
    ptr[r] = j;
    int32_t sum = 0;
    for (int64_t c = 0; c < k; ++c) {
      const int8_t q = w[r * k + c];
      if (q == 0) continue;
      masks[r * l.kc + c / kBitmapChunk] |= uint64_t{1} << (c % kBitmapChunk);
      vals[j++] = q;
      sum += q;
    }
    sc[r] = scales[r];
    rs[r] = sum;
  }
  ptr[n] = j;
}

BitmapView bitmap_view(const uint8_t* blob, size_t size, bool full_check) {
  parse_header(blob, size, FormatId::kBitmap);  // magic, version, format id, header size, flags, total
  BitmapHeader h;
  std::memcpy(&h, blob, sizeof h);
  if (reinterpret_cast<uintptr_t>(blob) % 8 != 0) fail("blob is not 8-byte aligned");
  check_dims(h.n, h.k);
  if (h.nnz < 0 || h.nnz > h.n * h.k) fail("nnz " + s(h.nnz) + " out of range");
  const Layout l = layout(h.n, h.k, h.nnz);
  if (h.kc != l.kc) fail("kc " + s(h.kc) + " does not match K=" + s(h.k));
  if (h.off_ptr != l.off_ptr || h.off_masks != l.off_masks || h.off_values != l.off_values ||
      h.off_scales != l.off_scales || h.off_rowsum != l.off_rowsum || h.total_bytes != l.total)
    fail("section offsets do not match the shape (N=" + s(h.n) + ", K=" + s(h.k) + ", nnz=" + s(h.nnz) + ")");
  bool reserved_zero = h.reserved0 == 0;
  for (uint8_t b : h.reserved) reserved_zero = reserved_zero && b == 0;
  if (!reserved_zero) fail("reserved header bytes are not zero");
  BitmapView v;
  v.n = h.n, v.k = h.k, v.kc = h.kc, v.nnz = h.nnz;
  v.ptr = reinterpret_cast<const uint32_t*>(blob + l.off_ptr);
  v.masks = reinterpret_cast<const uint64_t*>(blob + l.off_masks);
  v.values = reinterpret_cast<const int8_t*>(blob + l.off_values);
  v.scales = reinterpret_cast<const float*>(blob + l.off_scales);
  v.rowsum = reinterpret_cast<const int32_t*>(blob + l.off_rowsum);
  if (v.ptr[0] != 0) fail("row pointer 0 is " + s(v.ptr[0]) + ", not 0");
  for (int64_t r = 0; r < h.n; ++r)
    if (v.ptr[r + 1] < v.ptr[r]) fail("row pointers decrease at row " + s(r));
  if (v.ptr[h.n] != uint64_t(h.nnz)) fail("last row pointer " + s(v.ptr[h.n]) + " is not nnz=" + s(h.nnz));
  if (!full_check) return v;
  const int64_t tail = h.k % kBitmapChunk;
  const uint64_t tail_mask = tail ? (uint64_t{1} << tail) - 1 : ~uint64_t{0};
  for (int64_t r = 0; r < h.n; ++r) {
    const uint64_t* m = v.masks + r * h.kc;
    int64_t count = 0;
    for (int64_t c = 0; c < h.kc; ++c) count += __builtin_popcountll(m[c]);
    if (m[h.kc - 1] & ~tail_mask) fail("row " + s(r) + " has mask bits at columns >= K");
    if (count != int64_t(v.ptr[r + 1]) - int64_t(v.ptr[r]))
      fail("row " + s(r) + ": masks hold " + s(count) + " nonzeros, the row pointers " + s(int64_t(v.ptr[r + 1]) - v.ptr[r]));
    int64_t sum = 0;
    for (uint32_t j = v.ptr[r]; j < v.ptr[r + 1]; ++j) {
      if (v.values[j] == 0) fail("a stored value of row " + s(r) + " is zero");
      sum += v.values[j];
    }
    if (sum != v.rowsum[r]) fail("row sum of row " + s(r) + " is " + s(v.rowsum[r]) + ", the values add up to " + s(sum));
    if (!std::isfinite(v.scales[r])) fail("non-finite scale at row " + s(r));
  }
  for (int64_t i = 0; i < kBitmapValuePad; ++i)
    if (v.values[h.nnz + i] != 0) fail("value padding is not zero");
  // Alignment gaps are zero too, so an accepted blob is canonical (packing its contents gives its bytes).
  const uint64_t gaps[][2] = {{sizeof(BitmapHeader), l.off_ptr},
                              {l.off_ptr + uint64_t(h.n + 1) * 4, l.off_masks},
                              {l.off_masks + uint64_t(h.n) * uint64_t(h.kc) * 8, l.off_values},
                              {l.off_values + uint64_t(h.nnz) + kBitmapValuePad, l.off_scales},
                              {l.off_scales + uint64_t(h.n) * 4, l.off_rowsum},
                              {l.off_rowsum + uint64_t(h.n) * 4, l.total}};
  for (const auto& g : gaps)
    for (uint64_t i = g[0]; i < g[1]; ++i)
      if (blob[i] != 0) fail("alignment padding at byte " + s(int64_t(i)) + " is not zero");
  return v;
}

void bitmap_unpack(const BitmapView& v, int8_t* w, float* scales) {
  std::memset(w, 0, size_t(v.n) * size_t(v.k));
  for (int64_t r = 0; r < v.n; ++r) {
    uint32_t j = v.ptr[r];
    const uint32_t end = v.ptr[r + 1];
    for (int64_t c = 0; c < v.kc; ++c) {
      uint64_t m = v.masks[r * v.kc + c];
      while (m && j < end) {
        const int64_t col = c * kBitmapChunk + __builtin_ctzll(m);
        m &= m - 1;
        if (col < v.k) w[r * v.k + col] = v.values[j];
        ++j;
      }
    }
    scales[r] = v.scales[r];
  }
}

}  // namespace slimnn
