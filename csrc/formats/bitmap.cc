#include "formats/bitmap.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "formats/q8.h"

namespace slimnn {
namespace {

[[noreturn]] void fail(const std::string& what) { throw FormatError("slimnn bitmap sparse weights: " + what); }

std::string s(int64_t v) { return std::to_string(v); }

constexpr int64_t kMaxDim = int64_t{1} << 24;

struct Layout {
  int64_t kc, groups, nw;
  uint64_t off_ptr, off_masks, off_values, off_scales, off_rowsum, total;
};

// The masks section: uint64 per group and chunk, or (G = 8) uint16 per group, window and row.
uint64_t mask_bytes(const Layout& l, int g) {
  return g == kBitmapPermRows ? uint64_t(l.groups) * uint64_t(l.nw) * kBitmapPermRows * 2
                              : uint64_t(l.groups) * uint64_t(l.kc) * 8;
}

Layout layout(int64_t n, int64_t k, int g, int64_t stored) {
  Layout l;
  l.kc = (k + kBitmapChunk - 1) / kBitmapChunk;
  l.groups = (n + g - 1) / g;
  l.nw = g == kBitmapPermRows ? (k + kBitmapWindow - 1) / kBitmapWindow : 0;
  l.off_ptr = align64(sizeof(BitmapHeader));
  l.off_masks = align64(l.off_ptr + uint64_t(l.groups + 1) * 4);
  l.off_values = align64(l.off_masks + mask_bytes(l, g));
  l.off_scales = align64(l.off_values + uint64_t(stored) + kBitmapValuePad);
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

void check_group(int g) {
  if (g != 1 && g != 2 && g != kBitmapPermRows) fail("group_rows must be 1, 2 or 8, got " + s(g));
}

// The union mask of group gi, chunk c.
uint64_t union_mask(const int8_t* w, int64_t n, int64_t k, int g, int64_t gi, int64_t c) {
  uint64_t m = 0;
  for (int j = 0; j < g; ++j) {
    const int64_t r = gi * g + j;
    if (r >= n) break;
    for (int b = 0; b < kBitmapChunk; ++b) {
      const int64_t col = c * kBitmapChunk + b;
      if (col < k && w[r * k + col] != 0) m |= uint64_t{1} << b;
    }
  }
  return m;
}

int64_t stored_values(const int8_t* w, int64_t n, int64_t k, int g) {
  if (g == kBitmapPermRows) {  // offsets and values of the nonzeros
    int64_t nnz = 0;
    for (int64_t i = 0; i < n * k; ++i) nnz += w[i] != 0;
    if (2 * nnz > int64_t{0xFFFFFFFF} - 2 * kBitmapValuePad) fail("more than 2^32 values (group pointers are 32-bit)");
    return 2 * nnz;
  }
  const int64_t kc = (k + kBitmapChunk - 1) / kBitmapChunk, groups = (n + g - 1) / g;
  int64_t stored = 0;
  for (int64_t gi = 0; gi < groups; ++gi)
    for (int64_t c = 0; c < kc; ++c) stored += int64_t(g) * __builtin_popcountll(union_mask(w, n, k, g, gi, c));
  if (stored > int64_t{0xFFFFFFFF} - 2 * kBitmapValuePad) fail("more than 2^32 values (group pointers are 32-bit)");
  return stored;
}

}  // namespace

int bitmap_pick_group_rows(const int8_t* w, int64_t n, int64_t k) {
  check_dims(n, k);
  if (w == nullptr) fail("null weight pointer");
  int64_t nnz = 0;
  for (int64_t i = 0; i < n * k; ++i) nnz += w[i] != 0;
  if (nnz * 100 >= 15 * n * k) return 1;
  return n >= kBitmapPermRows ? kBitmapPermRows : n >= 2 ? 2 : 1;
}

uint64_t bitmap_pack_bytes(const int8_t* w, int64_t n, int64_t k, int group_rows) {
  check_dims(n, k);
  if (w == nullptr) fail("null weight pointer");
  if (group_rows == 0) group_rows = bitmap_pick_group_rows(w, n, k);
  check_group(group_rows);
  return layout(n, k, group_rows, stored_values(w, n, k, group_rows)).total;
}

void bitmap_pack(const int8_t* w, const float* scales, int64_t n, int64_t k, int group_rows, uint8_t* out,
                 uint64_t out_size) {
  check_dims(n, k);
  if (w == nullptr || scales == nullptr || out == nullptr) fail("null pointer");
  if (group_rows == 0) group_rows = bitmap_pick_group_rows(w, n, k);
  check_group(group_rows);
  const int g = group_rows;
  for (int64_t r = 0; r < n; ++r)
    if (!std::isfinite(scales[r])) fail("non-finite scale at row " + s(r));
  const int64_t stored = stored_values(w, n, k, g);
  const Layout l = layout(n, k, g, stored);
  if (out_size != l.total) fail("output buffer has " + s(int64_t(out_size)) + " bytes, the blob needs " + s(int64_t(l.total)));
  std::memset(out, 0, l.total);
  BitmapHeader h = new_header<BitmapHeader>(FormatId::kBitmap);
  h.n = n, h.k = k, h.kc = l.kc, h.stored = stored, h.group_rows = uint32_t(g);
  h.off_ptr = l.off_ptr, h.off_masks = l.off_masks, h.off_values = l.off_values;
  h.off_scales = l.off_scales, h.off_rowsum = l.off_rowsum, h.total_bytes = l.total;
  uint32_t* ptr = reinterpret_cast<uint32_t*>(out + l.off_ptr);
  uint64_t* masks = reinterpret_cast<uint64_t*>(out + l.off_masks);
  int8_t* vals = reinterpret_cast<int8_t*>(out + l.off_values);
  float* sc = reinterpret_cast<float*>(out + l.off_scales);
  int32_t* rs = reinterpret_cast<int32_t*>(out + l.off_rowsum);
  uint32_t j = 0;
  int64_t nnz = 0;
  uint16_t* counts = reinterpret_cast<uint16_t*>(out + l.off_masks);
  for (int64_t gi = 0; gi < l.groups && g == kBitmapPermRows; ++gi) {
    ptr[gi] = j;
    for (int64_t wi = 0; wi < l.nw; ++wi)
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        std::vector<int> cols;
        if (r < n)
          for (int64_t col = wi * kBitmapWindow; col < std::min(k, (wi + 1) * kBitmapWindow); ++col)
            if (w[r * k + col] != 0) cols.push_back(int(col - wi * kBitmapWindow));
        counts[(gi * l.nw + wi) * g + jr] = uint16_t(cols.size());
        for (size_t p0 = 0; p0 < cols.size(); p0 += 64) {  // pieces of at most 64
          const size_t p1 = std::min(cols.size(), p0 + 64);
          for (size_t i = p0; i < p1; ++i) vals[j++] = int8_t(uint8_t(cols[i]));
          for (size_t i = p0; i < p1; ++i) vals[j++] = w[r * k + wi * kBitmapWindow + cols[i]];
        }
        nnz += int64_t(cols.size());
      }
  }
  for (int64_t gi = 0; gi < l.groups && g != kBitmapPermRows; ++gi) {
    ptr[gi] = j;
    for (int64_t c = 0; c < l.kc; ++c) {
      const uint64_t m = union_mask(w, n, k, g, gi, c);
      masks[gi * l.kc + c] = m;
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        for (uint64_t mm = m; mm; mm &= mm - 1) {
          const int64_t col = c * kBitmapChunk + __builtin_ctzll(mm);
          const int8_t q = r < n ? w[r * k + col] : 0;
          vals[j++] = q;
          nnz += q != 0;
        }
      }
    }
  }
  ptr[l.groups] = j;
  for (int64_t r = 0; r < n; ++r) {
    int32_t sum = 0;
    for (int64_t c = 0; c < k; ++c) sum += w[r * k + c];
    sc[r] = scales[r];
    rs[r] = sum;
  }
  h.nnz = nnz;
  std::memcpy(out, &h, sizeof h);
}

BitmapView bitmap_view(const uint8_t* blob, size_t size, bool full_check) {
  parse_header(blob, size, FormatId::kBitmap);  // magic, version, format id, header size, flags, total
  BitmapHeader h;
  std::memcpy(&h, blob, sizeof h);
  if (reinterpret_cast<uintptr_t>(blob) % 8 != 0) fail("blob is not 8-byte aligned");
  check_dims(h.n, h.k);
  check_group(int(h.group_rows));
  const int g = int(h.group_rows);
  const int64_t max_stored = int64_t(g) * ((h.n + g - 1) / g) * h.k * (g == kBitmapPermRows ? 2 : 1);
  if (h.stored < 0 || h.stored > max_stored) fail("stored count " + s(h.stored) + " out of range");
  if (h.nnz < 0 || h.nnz > h.stored) fail("nnz " + s(h.nnz) + " out of range");
  const Layout l = layout(h.n, h.k, g, h.stored);
  if (h.kc != l.kc) fail("kc " + s(h.kc) + " does not match K=" + s(h.k));
  if (h.off_ptr != l.off_ptr || h.off_masks != l.off_masks || h.off_values != l.off_values ||
      h.off_scales != l.off_scales || h.off_rowsum != l.off_rowsum || h.total_bytes != l.total)
    fail("section offsets do not match the shape (N=" + s(h.n) + ", K=" + s(h.k) + ", stored=" + s(h.stored) + ")");
  bool reserved_zero = true;
  for (uint8_t b : h.reserved) reserved_zero = reserved_zero && b == 0;
  if (!reserved_zero) fail("reserved header bytes are not zero");
  BitmapView v;
  v.n = h.n, v.k = h.k, v.kc = h.kc, v.nnz = h.nnz, v.stored = h.stored;
  v.group_rows = g, v.groups = l.groups;
  v.ptr = reinterpret_cast<const uint32_t*>(blob + l.off_ptr);
  const bool perm = g == kBitmapPermRows;
  v.masks = perm ? nullptr : reinterpret_cast<const uint64_t*>(blob + l.off_masks);
  v.nw = l.nw;
  v.counts = perm ? reinterpret_cast<const uint16_t*>(blob + l.off_masks) : nullptr;
  v.values = reinterpret_cast<const int8_t*>(blob + l.off_values);
  v.scales = reinterpret_cast<const float*>(blob + l.off_scales);
  v.rowsum = reinterpret_cast<const int32_t*>(blob + l.off_rowsum);
  if (v.ptr[0] != 0) fail("group pointer 0 is " + s(v.ptr[0]) + ", not 0");
  for (int64_t gi = 0; gi < l.groups; ++gi)
    if (v.ptr[gi + 1] < v.ptr[gi]) fail("group pointers decrease at group " + s(gi));
  if (v.ptr[l.groups] != uint64_t(h.stored)) fail("last group pointer " + s(v.ptr[l.groups]) + " is not stored=" + s(h.stored));
  if (!full_check) return v;
  std::vector<int64_t> sums(size_t(h.n), 0);
  int64_t nnz = 0;
  for (int64_t gi = 0; gi < l.groups && perm; ++gi) {
    int64_t j = v.ptr[gi];
    for (int64_t wi = 0; wi < l.nw; ++wi) {
      const int64_t width = std::min<int64_t>(kBitmapWindow, h.k - wi * kBitmapWindow);
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        const int64_t c = v.counts[(gi * l.nw + wi) * g + jr];
        const std::string where = "group " + s(gi) + ", window " + s(wi) + ", row " + s(jr);
        if (c > (r < h.n ? width : 0)) fail(where + ": count " + s(c) + " exceeds the window's " + s(r < h.n ? width : 0) + " columns");
        if (j + 2 * c > int64_t(v.ptr[gi + 1])) fail(where + ": the counts run past the group's values");
        int last = -1;
        for (int64_t p0 = 0; p0 < c; p0 += 64) {
          const int64_t pc = std::min<int64_t>(64, c - p0);
          for (int64_t i = 0; i < pc; ++i) {
            const int off = uint8_t(v.values[j + i]);
            const int8_t q = v.values[j + pc + i];
            if (off <= last || off >= width) fail(where + ": column offsets not ascending inside the window");
            if (q == 0) fail(where + ": a stored value is zero");
            last = off;
            sums[size_t(r)] += q;
            ++nnz;
          }
          j += 2 * pc;
        }
      }
    }
    if (j != int64_t(v.ptr[gi + 1])) fail("group " + s(gi) + ": the counts hold " + s(j - int64_t(v.ptr[gi])) +
                                          " bytes, the group pointers " + s(int64_t(v.ptr[gi + 1]) - v.ptr[gi]));
  }
  const int64_t tail = h.k % kBitmapChunk;
  const uint64_t tail_mask = tail ? (uint64_t{1} << tail) - 1 : ~uint64_t{0};
  for (int64_t gi = 0; gi < l.groups && !perm; ++gi) {
    const uint64_t* m = v.masks + gi * h.kc;
    if (m[h.kc - 1] & ~tail_mask) fail("group " + s(gi) + " has mask bits at columns >= K");
    int64_t count = 0;
    for (int64_t c = 0; c < h.kc; ++c) count += __builtin_popcountll(m[c]);
    if (count * g != int64_t(v.ptr[gi + 1]) - int64_t(v.ptr[gi]))
      fail("group " + s(gi) + ": masks hold " + s(count) + " columns, the group pointers " +
           s(int64_t(v.ptr[gi + 1]) - v.ptr[gi]) + " values");
    int64_t j = v.ptr[gi];
    for (int64_t c = 0; c < h.kc; ++c) {
      const int pc = __builtin_popcountll(m[c]);
      for (int b = 0; b < pc; ++b) {  // every column of the mask has a nonzero in some row
        bool any = false;
        for (int jr = 0; jr < g; ++jr) any = any || v.values[j + jr * pc + b] != 0;
        if (!any) fail("group " + s(gi) + ", chunk " + s(c) + ": a mask bit with only zero values");
      }
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        for (int b = 0; b < pc; ++b, ++j) {
          const int8_t q = v.values[j];
          if (r >= h.n && q != 0) fail("a row past N has nonzero values");
          if (r < h.n) sums[size_t(r)] += q;
          nnz += q != 0;
        }
      }
    }
  }
  if (nnz != h.nnz) fail("nnz field " + s(h.nnz) + " but " + s(nnz) + " values are nonzero");
  for (int64_t r = 0; r < h.n; ++r) {
    if (sums[size_t(r)] != v.rowsum[r])
      fail("row sum of row " + s(r) + " is " + s(v.rowsum[r]) + ", the values add up to " + s(sums[size_t(r)]));
    if (!std::isfinite(v.scales[r])) fail("non-finite scale at row " + s(r));
  }
  for (int64_t i = 0; i < kBitmapValuePad; ++i)
    if (v.values[h.stored + i] != 0) fail("value padding is not zero");
  // Alignment gaps are zero too, so an accepted blob is canonical (packing its contents gives its bytes).
  const uint64_t gaps[][2] = {{l.off_ptr + uint64_t(l.groups + 1) * 4, l.off_masks},
                              {l.off_masks + mask_bytes(l, g), l.off_values},
                              {l.off_values + uint64_t(h.stored) + kBitmapValuePad, l.off_scales},
                              {l.off_scales + uint64_t(h.n) * 4, l.off_rowsum},
                              {l.off_rowsum + uint64_t(h.n) * 4, l.total}};
  for (const auto& gp : gaps)
    for (uint64_t i = gp[0]; i < gp[1]; ++i)
      if (blob[i] != 0) fail("alignment padding at byte " + s(int64_t(i)) + " is not zero");
  return v;
}

void bitmap_unpack(const BitmapView& v, int8_t* w, float* scales) {
  std::memset(w, 0, size_t(v.n) * size_t(v.k));
  const int g = v.group_rows;
  for (int64_t gi = 0; gi < v.groups && g == kBitmapPermRows; ++gi) {
    int64_t j = v.ptr[gi];
    const int64_t end = v.ptr[gi + 1];
    for (int64_t wi = 0; wi < v.nw; ++wi)
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        for (int64_t c = v.counts[(gi * v.nw + wi) * g + jr]; c > 0;) {
          const int64_t pc = std::min<int64_t>(64, c);
          for (int64_t i = 0; i < pc && j + pc + i < end; ++i) {
            const int64_t col = wi * kBitmapWindow + uint8_t(v.values[j + i]);
            if (r < v.n && col < v.k) w[r * v.k + col] = v.values[j + pc + i];
          }
          j += 2 * pc, c -= pc;
        }
      }
  }
  for (int64_t gi = 0; gi < v.groups && g != kBitmapPermRows; ++gi) {
    int64_t j = v.ptr[gi];
    const int64_t end = v.ptr[gi + 1];
    for (int64_t c = 0; c < v.kc; ++c) {
      const uint64_t m = v.masks[gi * v.kc + c];
      for (int jr = 0; jr < g; ++jr) {
        const int64_t r = gi * g + jr;
        for (uint64_t mm = m; mm; mm &= mm - 1, ++j) {
          const int64_t col = c * kBitmapChunk + __builtin_ctzll(mm);
          if (r < v.n && col < v.k && j < end) w[r * v.k + col] = v.values[j];
        }
      }
    }
  }
  for (int64_t r = 0; r < v.n; ++r) scales[r] = v.scales[r];
}

}  // namespace slimnn
