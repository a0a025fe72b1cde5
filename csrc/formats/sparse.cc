#include "formats/sparse.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace slimnn {
namespace {

[[noreturn]] void fail(const std::string& what) { throw FormatError("slimnn sparse weights: " + what); }

std::string s(int64_t v) { return std::to_string(v); }

constexpr int64_t kMaxDim = int64_t{1} << 24;

void check_dims(int64_t n, int64_t k) {
  if (n <= 0 || k <= 0) fail("N and K must be positive, got N=" + s(n) + ", K=" + s(k));
  if (n > kMaxDim || k > kMaxDim) fail("shape too large: N=" + s(n) + ", K=" + s(k) + " (max " + s(kMaxDim) + ")");
}

void check_vt(SparseValues vt) {
  if (vt != SparseValues::kF32 && vt != SparseValues::kI8) fail("unknown value type " + s(int64_t(vt)));
}

uint64_t vbytes(SparseValues vt) { return vt == SparseValues::kF32 ? 4 : 1; }

// Reads W[i] as float (fp32) or as the int8 integer; nonzero test on the stored value.
inline bool nonzero(const void* w, SparseValues vt, int64_t i) {
  return vt == SparseValues::kF32 ? static_cast<const float*>(w)[i] != 0.0f : static_cast<const int8_t*>(w)[i] != 0;
}

inline void copy_value(const void* w, SparseValues vt, int64_t i, void* dst, int64_t j) {
  if (vt == SparseValues::kF32)
    static_cast<float*>(dst)[j] = static_cast<const float*>(w)[i];
  else
    static_cast<int8_t*>(dst)[j] = static_cast<const int8_t*>(w)[i];
}

inline bool value_nonzero(const void* vals, SparseValues vt, int64_t j) { return nonzero(vals, vt, j); }

void check_input(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k) {
  check_vt(vt);
  check_dims(n, k);
  if (w == nullptr) fail("null weight pointer");
  if (vt == SparseValues::kF32) {
    const float* f = static_cast<const float*>(w);
    for (int64_t i = 0; i < n * k; ++i)
      if (!std::isfinite(f[i])) fail("non-finite weight at row " + s(i / k) + ", column " + s(i % k));
  } else {
    if (scales == nullptr) fail("int8 values need scales");
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(scales[i])) fail("non-finite scale at row " + s(i));
  }
}

SparseHeader base_header(FormatId f, SparseValues vt, int64_t n, int64_t k) {
  SparseHeader h = new_header<SparseHeader>(f);
  h.n = n, h.k = k;
  h.value_type = static_cast<uint32_t>(vt);
  return h;
}

// ---------------------------------------------------------------- what the three formats share
// The header's value sections (values, int8 scales, total size) as a layout places them.
void set_value_offsets(SparseHeader& h, SparseValues vt, uint64_t off_values, uint64_t off_scales, uint64_t total) {
  h.off_values = off_values;
  h.off_scales = vt == SparseValues::kI8 ? off_scales : 0;
  h.total_bytes = total;
}
bool value_offsets_match(const SparseHeader& h, SparseValues vt, uint64_t off_values, uint64_t off_scales,
                         uint64_t total) {
  return h.off_values == off_values && h.off_scales == (vt == SparseValues::kI8 ? off_scales : 0) &&
         h.total_bytes == total && h.p2 == 0;
}

// A packer's output buffer: exactly the blob's size, zeroed (padding and unused slots stay zero).
void start_blob(uint8_t* out, uint64_t out_size, uint64_t total) {
  if (out_size != total) fail("output buffer has " + s(int64_t(out_size)) + " bytes, the blob needs " + s(int64_t(total)));
  std::memset(out, 0, total);
}
// The per-row int8 scales, in row order (bsr, nm; csr stores them per lane).
void put_row_scales(uint8_t* out, uint64_t off_scales, SparseValues vt, const float* scales, int64_t n) {
  if (vt != SparseValues::kI8) return;
  float* sc = reinterpret_cast<float*>(out + off_scales);
  for (int64_t row = 0; row < n; ++row) sc[row] = scales[row];
}

// The view's fields every format fills alike.
SparseView view_of(FormatId f, const SparseHeader& h, const uint8_t* blob, int64_t units, int64_t entries) {
  const SparseValues vt = static_cast<SparseValues>(h.value_type);
  SparseView v{};
  v.format = f;
  v.values_type = vt;
  v.n = h.n, v.k = h.k, v.nnz = h.nnz, v.n_units = units, v.n_entries = entries;
  v.values = blob + h.off_values;
  v.scales = vt == SparseValues::kI8 ? reinterpret_cast<const float*>(blob + h.off_scales) : nullptr;
  return v;
}

// Unit pointers (csr slices, bsr block rows) are what the kernels index memory with: always checked.
void check_unit_ptr(const uint32_t* ptr, int64_t units, int64_t entries, const char* what, const char* entry_word,
                    const char* unit_word) {
  if (ptr[0] != 0 || int64_t(ptr[units]) != entries)
    fail(std::string(what) + " pointers do not span the " + entry_word);
  for (int64_t u = 0; u < units; ++u)
    if (ptr[u + 1] < ptr[u]) fail(std::string(what) + " pointers decrease at " + unit_word + " " + s(u));
}

// Full check of stored value vi: fp32 values must be finite (where() names the place); true if nonzero.
template <typename Where>
bool checked_nonzero(const SparseView& v, int64_t vi, Where where) {
  if (v.values_type == SparseValues::kF32 && !std::isfinite(static_cast<const float*>(v.values)[vi]))
    fail("non-finite value " + where());
  return value_nonzero(v.values, v.values_type, vi);
}

// Full check, last steps: the nonzeros counted match the header, the scales are finite.
void check_nnz_and_scales(const SparseHeader& h, const SparseView& v, int64_t nnz, const char* scale_where) {
  if (nnz != h.nnz) fail("nnz field " + s(h.nnz) + " does not match the " + s(nnz) + " nonzero values");
  if (v.scales)
    for (int64_t i = 0; i < h.n; ++i)
      if (!std::isfinite(v.scales[i])) fail(std::string("non-finite scale ") + scale_where + s(i));
}

// ---------------------------------------------------------------- csr (SELL-8, delta-coded indices)

struct CsrLayout {
  int64_t groups, slots;
  uint64_t off_ptr, off_perm, off_index, off_values, off_scales, total;
};

CsrLayout csr_layout(int64_t n, SparseValues vt, int bits, int64_t slots) {
  CsrLayout l;
  l.groups = (n + kSellLanes - 1) / kSellLanes;
  l.slots = slots;
  const uint64_t lanes = uint64_t(l.groups) * kSellLanes;
  l.off_ptr = align64(sizeof(SparseHeader));
  l.off_perm = align64(l.off_ptr + 4 * uint64_t(l.groups + 1));
  l.off_index = align64(l.off_perm + 4 * lanes);
  l.off_values = align64(l.off_index + uint64_t(slots) * uint64_t(bits));  // 8 lanes * bits / 8 bytes per slot
  l.off_scales = align64(l.off_values + uint64_t(slots) * kSellLanes * vbytes(vt));
  l.total = align64(l.off_scales + (vt == SparseValues::kI8 ? 4 * lanes : 0));
  return l;
}

void check_bits(int bits) {
  if (bits != 4 && bits != 8) fail("csr index_bits must be 4 or 8, got " + s(bits));
}

// Entries (nonzeros plus fillers) that row r needs with deltas of at most maxd.
int64_t row_entries(const void* w, SparseValues vt, int64_t r, int64_t k, int maxd) {
  int64_t cur = 0, count = 0;
  for (int64_t c = 0; c < k; ++c) {
    if (!nonzero(w, vt, r * k + c)) continue;
    count += c == cur ? 1 : (c - cur + maxd - 1) / maxd;
    cur = c;
  }
  return count;
}

struct CsrPlan {
  std::vector<int64_t> order;   // rows by entry count, longest first (stable)
  std::vector<uint32_t> gptr;   // slot ranges of the slices
};

CsrPlan csr_plan(const void* w, SparseValues vt, int64_t n, int64_t k, int bits) {
  const int maxd = csr_max_delta(bits);
  std::vector<int64_t> counts(n);
  for (int64_t r = 0; r < n; ++r) counts[r] = row_entries(w, vt, r, k, maxd);
  CsrPlan p;
  p.order.resize(n);
  std::iota(p.order.begin(), p.order.end(), 0);
  std::stable_sort(p.order.begin(), p.order.end(), [&](int64_t a, int64_t b) { return counts[a] > counts[b]; });
  const int64_t groups = (n + kSellLanes - 1) / kSellLanes;
  p.gptr.assign(groups + 1, 0);
  uint64_t total = 0;
  for (int64_t g = 0; g < groups; ++g) {
    total += uint64_t(counts[p.order[g * kSellLanes]]);  // the slice's longest row comes first
    if (total > 0xFFFFFFFFull) fail("too many entries for 32-bit slot offsets");
    p.gptr[g + 1] = static_cast<uint32_t>(total);
  }
  return p;
}

inline void put_delta(uint8_t* deltas, int bits, int64_t slot, int lane, int d) {
  if (bits == 8) {
    deltas[slot * 8 + lane] = static_cast<uint8_t>(d);
  } else {
    uint8_t& b = deltas[slot * 4 + lane / 2];
    b = static_cast<uint8_t>(b | (d << (4 * (lane % 2))));
  }
}

inline int get_delta(const uint8_t* deltas, int bits, int64_t slot, int lane) {
  if (bits == 8) return deltas[slot * 8 + lane];
  return (deltas[slot * 4 + lane / 2] >> (4 * (lane % 2))) & 15;
}

SparseView csr_view(const SparseHeader& h, const uint8_t* blob, bool full_check) {
  const SparseValues vt = static_cast<SparseValues>(h.value_type);
  const int bits = static_cast<int>(h.p0);
  check_bits(bits);
  if (h.p1 != kSellLanes) fail("csr lanes must be " + s(kSellLanes) + ", got " + s(h.p1));
  if (h.n_entries < 0 || h.n_entries > 0xFFFFFFFFll) fail("bad slot count " + s(h.n_entries));
  const CsrLayout l = csr_layout(h.n, vt, bits, h.n_entries);
  if (h.n_units != l.groups || h.off_ptr != l.off_ptr || h.off_perm != l.off_perm || h.off_index != l.off_index ||
      !value_offsets_match(h, vt, l.off_values, l.off_scales, l.total))
    fail("csr header fields are inconsistent with N=" + s(h.n) + ", K=" + s(h.k) + ", slots=" + s(h.n_entries));
  SparseView v = view_of(FormatId::kSparseCsr, h, blob, l.groups, l.slots);
  v.index_bits = bits;
  v.ptr = reinterpret_cast<const uint32_t*>(blob + h.off_ptr);
  v.perm = reinterpret_cast<const int32_t*>(blob + h.off_perm);
  v.deltas = blob + h.off_index;
  check_unit_ptr(v.ptr, l.groups, l.slots, "csr slice", "slots", "slice");  // O(N/8)
  if (!full_check) return v;

  const int64_t lanes = l.groups * kSellLanes;
  std::vector<uint8_t> seen(h.n, 0);
  for (int64_t i = 0; i < lanes; ++i) {
    const int32_t p = v.perm[i];
    if (i >= h.n) {
      if (p != -1) fail("csr padding lane " + s(i) + " must have row id -1");
      continue;
    }
    if (p < 0 || p >= h.n || seen[p]) fail("csr row permutation is not a permutation (lane " + s(i) + ")");
    seen[p] = 1;
  }
  int64_t nnz = 0;
  for (int64_t g = 0; g < l.groups; ++g) {
    for (int lane = 0; lane < kSellLanes; ++lane) {
      int64_t col = 0, last = -1;
      const bool pad = g * kSellLanes + lane >= h.n;
      for (int64_t j = v.ptr[g]; j < v.ptr[g + 1]; ++j) {
        col += get_delta(v.deltas, bits, j, lane);
        if (col >= h.k) fail("csr column index out of range in slice " + s(g) + ", lane " + s(lane));
        if (!checked_nonzero(v, j * kSellLanes + lane, [&] { return "in slice " + s(g); })) continue;
        if (pad) fail("nonzero value in a padding lane of slice " + s(g));
        if (col <= last) fail("csr columns of a row are not increasing (slice " + s(g) + ")");
        last = col;
        ++nnz;
      }
    }
  }
  check_nnz_and_scales(h, v, nnz, "in lane ");
  return v;
}

// ---------------------------------------------------------------- bsr

struct BsrLayout {
  int64_t brows, kb, blocks;
  uint64_t off_ptr, off_index, off_values, off_scales, total;
};

BsrLayout bsr_layout(int64_t n, int64_t k, SparseValues vt, int r, int c, int64_t blocks) {
  BsrLayout l;
  l.brows = (n + r - 1) / r;
  l.kb = (k + c - 1) / c;
  if (l.kb > kBsrMaxKb) fail("K=" + s(k) + " has more than " + s(kBsrMaxKb) + " block columns of width " + s(c));
  l.blocks = blocks;
  l.off_ptr = align64(sizeof(SparseHeader));
  l.off_index = align64(l.off_ptr + 4 * uint64_t(l.brows + 1));
  l.off_values = align64(l.off_index + 2 * uint64_t(blocks));
  l.off_scales = align64(l.off_values + uint64_t(blocks) * uint64_t(r * c) * vbytes(vt));
  l.total = align64(l.off_scales + (vt == SparseValues::kI8 ? 4 * uint64_t(l.brows) * r : 0));
  return l;
}

void check_block(int r, int c) {
  if (!bsr_block_supported(r, c))
    fail("block shape " + s(r) + "x" + s(c) + " is not supported (use 1x4, 1x8, 4x1 or 16x1)");
}

inline bool block_nonzero(const void* w, SparseValues vt, int64_t n, int64_t k, int r, int c, int64_t b, int64_t kbi) {
  for (int i = 0; i < r; ++i) {
    const int64_t row = b * r + i;
    if (row >= n) break;
    for (int j = 0; j < c; ++j) {
      const int64_t col = kbi * c + j;
      if (col < k && nonzero(w, vt, row * k + col)) return true;
    }
  }
  return false;
}

int64_t bsr_count(const void* w, SparseValues vt, int64_t n, int64_t k, int r, int c, std::vector<uint32_t>* ptr) {
  const int64_t brows = (n + r - 1) / r, kb = (k + c - 1) / c;
  uint64_t total = 0;
  if (ptr) ptr->assign(brows + 1, 0);
  for (int64_t b = 0; b < brows; ++b) {
    for (int64_t j = 0; j < kb; ++j) total += block_nonzero(w, vt, n, k, r, c, b, j);
    if (total > 0xFFFFFFFFull) fail("too many blocks for 32-bit offsets");
    if (ptr) (*ptr)[b + 1] = static_cast<uint32_t>(total);
  }
  return static_cast<int64_t>(total);
}

SparseView bsr_view(const SparseHeader& h, const uint8_t* blob, bool full_check) {
  const SparseValues vt = static_cast<SparseValues>(h.value_type);
  const int r = static_cast<int>(h.p0), c = static_cast<int>(h.p1);
  check_block(r, c);
  if (h.n_entries < 0 || h.n_entries > 0xFFFFFFFFll) fail("bad block count " + s(h.n_entries));
  const BsrLayout l = bsr_layout(h.n, h.k, vt, r, c, h.n_entries);
  if (h.n_units != l.brows || h.off_ptr != l.off_ptr || h.off_perm != 0 || h.off_index != l.off_index ||
      !value_offsets_match(h, vt, l.off_values, l.off_scales, l.total))
    fail("bsr header fields are inconsistent with N=" + s(h.n) + ", K=" + s(h.k) + ", blocks=" + s(h.n_entries));
  SparseView v = view_of(FormatId::kBsr, h, blob, l.brows, l.blocks);
  v.br = r, v.bc = c, v.kb = l.kb;
  v.ptr = reinterpret_cast<const uint32_t*>(blob + h.off_ptr);
  v.bcol = reinterpret_cast<const uint16_t*>(blob + h.off_index);
  check_unit_ptr(v.ptr, l.brows, l.blocks, "bsr block-row", "blocks", "block row");
  if (!full_check) return v;

  int64_t nnz = 0;
  for (int64_t b = 0; b < l.brows; ++b) {
    int64_t last = -1;
    for (int64_t i = v.ptr[b]; i < v.ptr[b + 1]; ++i) {
      const int64_t col = v.bcol[i];
      if (col >= l.kb || col <= last) fail("bsr block columns out of range or not increasing in block row " + s(b));
      last = col;
      for (int a = 0; a < r; ++a)
        for (int e = 0; e < c; ++e) {
          if (!checked_nonzero(v, i * r * c + a * c + e, [&] { return "in block row " + s(b); })) continue;
          if (b * r + a >= h.n || col * c + e >= h.k) fail("nonzero value in block padding (block row " + s(b) + ")");
          ++nnz;
        }
    }
  }
  check_nnz_and_scales(h, v, nnz, "at row ");
  return v;
}

// ---------------------------------------------------------------- nm

struct NmLayout {
  int64_t kc;
  int vpc;
  uint64_t off_index, off_values, off_scales, total;
};

void check_nm(int nm_n, int nm_m) {
  if (!(nm_m == 4 || nm_m == 8 || nm_m == 16) || nm_n < 1 || nm_n >= nm_m)
    fail("N:M must have M in {4, 8, 16} and 1 <= N < M, got " + s(nm_n) + ":" + s(nm_m));
}

NmLayout nm_layout(int64_t n, int64_t k, SparseValues vt, int nm_n, int nm_m) {
  NmLayout l;
  l.kc = (k + kNmChunk - 1) / kNmChunk;
  l.vpc = kNmChunk * nm_n / nm_m;
  l.off_index = align64(sizeof(SparseHeader));
  l.off_values = align64(l.off_index + 2 * uint64_t(n) * uint64_t(l.kc));
  l.off_scales = align64(l.off_values + uint64_t(n) * uint64_t(l.kc) * uint64_t(l.vpc) * vbytes(vt));
  l.total = align64(l.off_scales + (vt == SparseValues::kI8 ? 4 * uint64_t(n) : 0));
  return l;
}

SparseView nm_view(const SparseHeader& h, const uint8_t* blob, bool full_check) {
  const SparseValues vt = static_cast<SparseValues>(h.value_type);
  const int nm_n = static_cast<int>(h.p0), nm_m = static_cast<int>(h.p1);
  check_nm(nm_n, nm_m);
  const NmLayout l = nm_layout(h.n, h.k, vt, nm_n, nm_m);
  if (h.n_units != h.n || h.n_entries != l.kc || h.off_ptr != 0 || h.off_perm != 0 || h.off_index != l.off_index ||
      !value_offsets_match(h, vt, l.off_values, l.off_scales, l.total))
    fail("nm header fields are inconsistent with N=" + s(h.n) + ", K=" + s(h.k));
  SparseView v = view_of(FormatId::kNm, h, blob, h.n, l.kc);
  v.nm_n = nm_n, v.nm_m = nm_m, v.vpc = l.vpc, v.kc = l.kc;
  v.masks = reinterpret_cast<const uint16_t*>(blob + h.off_index);
  if (!full_check) return v;

  int64_t nnz = 0;
  const uint32_t gmask = (1u << nm_m) - 1;
  for (int64_t row = 0; row < h.n; ++row)
    for (int64_t ch = 0; ch < l.kc; ++ch) {
      const uint32_t m = v.masks[row * l.kc + ch];
      for (int g = 0; g < kNmChunk; g += nm_m)
        if (__builtin_popcount((m >> g) & gmask) != nm_n)
          fail("nm mask of row " + s(row) + ", columns " + s(ch * kNmChunk + g) + "+ does not have " + s(nm_n) +
               " bits set");
      uint32_t bits = m;
      for (int i = 0; i < l.vpc; ++i) {
        const int col = __builtin_ctz(bits);
        bits &= bits - 1;
        if (!checked_nonzero(v, (row * l.kc + ch) * l.vpc + i, [&] { return "at row " + s(row); })) continue;
        if (ch * kNmChunk + col >= h.k) fail("nonzero value in nm column padding at row " + s(row));
        ++nnz;
      }
    }
  check_nnz_and_scales(h, v, nnz, "at row ");
  return v;
}

SparseHeader read_header(const uint8_t* blob, size_t size) {
  if (blob == nullptr) fail("null blob");
  if (size < sizeof(SparseHeader)) fail("blob of " + s(int64_t(size)) + " bytes is shorter than the header (truncated?)");
  SparseHeader h;
  std::memcpy(&h, blob, sizeof h);
  const uint16_t f = h.format;
  if (f != uint16_t(FormatId::kSparseCsr) && f != uint16_t(FormatId::kBsr) && f != uint16_t(FormatId::kNm)) {
    if (std::memcmp(h.magic, kMagic, 4) != 0) fail("bad magic (not a slimnn packed weight blob)");
    fail("format id " + s(f) + " is not a sparse format (csr=3, bsr=4, nm=5)");
  }
  parse_header(blob, size, static_cast<FormatId>(f));  // magic, version, sizes, flags
  check_dims(h.n, h.k);
  check_vt(static_cast<SparseValues>(h.value_type));
  if (h.nnz < 0) fail("negative nnz");
  if (reinterpret_cast<uintptr_t>(blob) % 4 != 0) fail("blob is not 4-byte aligned");
  return h;
}

}  // namespace

bool bsr_block_supported(int r, int c) {
  return (r == 1 && (c == 4 || c == 8)) || (c == 1 && (r == 4 || r == 16));
}

FormatId sparse_format_of(const uint8_t* blob, size_t size) {
  return static_cast<FormatId>(read_header(blob, size).format);
}

SparseView sparse_view(const uint8_t* blob, size_t size, bool full_check) {
  const SparseHeader h = read_header(blob, size);
  switch (static_cast<FormatId>(h.format)) {
    case FormatId::kSparseCsr: return csr_view(h, blob, full_check);
    case FormatId::kBsr: return bsr_view(h, blob, full_check);
    default: return nm_view(h, blob, full_check);
  }
}

// ---------------------------------------------------------------- packers

uint64_t csr_pack_bytes(const void* w, SparseValues vt, int64_t n, int64_t k, int index_bits) {
  check_bits(index_bits);
  check_vt(vt);
  check_dims(n, k);
  if (w == nullptr) fail("null weight pointer");
  const CsrPlan p = csr_plan(w, vt, n, k, index_bits);
  return csr_layout(n, vt, index_bits, p.gptr.back()).total;
}

void csr_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int index_bits, uint8_t* out,
              uint64_t out_size) {
  check_bits(index_bits);
  check_input(w, scales, vt, n, k);
  const CsrPlan p = csr_plan(w, vt, n, k, index_bits);
  const CsrLayout l = csr_layout(n, vt, index_bits, p.gptr.back());
  start_blob(out, out_size, l.total);
  SparseHeader h = base_header(FormatId::kSparseCsr, vt, n, k);
  h.p0 = static_cast<uint32_t>(index_bits);
  h.p1 = kSellLanes;
  h.n_units = l.groups, h.n_entries = l.slots;
  h.off_ptr = l.off_ptr, h.off_perm = l.off_perm, h.off_index = l.off_index;
  set_value_offsets(h, vt, l.off_values, l.off_scales, l.total);
  std::memcpy(out + l.off_ptr, p.gptr.data(), 4 * p.gptr.size());
  int32_t* perm = reinterpret_cast<int32_t*>(out + l.off_perm);
  uint8_t* deltas = out + l.off_index;
  void* vals = out + l.off_values;
  float* sc = vt == SparseValues::kI8 ? reinterpret_cast<float*>(out + l.off_scales) : nullptr;
  const int maxd = csr_max_delta(index_bits);
  int64_t nnz = 0;
  for (int64_t g = 0; g < l.groups; ++g) {
    for (int lane = 0; lane < kSellLanes; ++lane) {
      const int64_t i = g * kSellLanes + lane;
      if (i >= n) {
        perm[i] = -1;
        continue;
      }
      const int64_t row = p.order[i];
      perm[i] = static_cast<int32_t>(row);
      if (sc) sc[i] = scales[row];
      int64_t slot = p.gptr[g], cur = 0;
      for (int64_t c = 0; c < k; ++c) {
        if (!nonzero(w, vt, row * k + c)) continue;
        while (c - cur > maxd) {  // filler: zero value, advances the cursor by maxd
          put_delta(deltas, index_bits, slot++, lane, maxd);
          cur += maxd;
        }
        put_delta(deltas, index_bits, slot, lane, static_cast<int>(c - cur));
        copy_value(w, vt, row * k + c, vals, slot * kSellLanes + lane);
        ++slot, ++nnz;
        cur = c;
      }
      // The remaining slots of the slice stay zero: delta 0, value 0.
    }
  }
  h.nnz = nnz;
  std::memcpy(out, &h, sizeof h);
}

uint64_t bsr_pack_bytes(const void* w, SparseValues vt, int64_t n, int64_t k, int r, int c) {
  check_vt(vt);
  check_dims(n, k);
  check_block(r, c);
  if (w == nullptr) fail("null weight pointer");
  bsr_layout(n, k, vt, r, c, 0);  // validates kb
  return bsr_layout(n, k, vt, r, c, bsr_count(w, vt, n, k, r, c, nullptr)).total;
}

void bsr_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int r, int c, uint8_t* out,
              uint64_t out_size) {
  check_block(r, c);
  check_input(w, scales, vt, n, k);
  bsr_layout(n, k, vt, r, c, 0);
  std::vector<uint32_t> ptr;
  const int64_t blocks = bsr_count(w, vt, n, k, r, c, &ptr);
  const BsrLayout l = bsr_layout(n, k, vt, r, c, blocks);
  start_blob(out, out_size, l.total);
  SparseHeader h = base_header(FormatId::kBsr, vt, n, k);
  h.p0 = static_cast<uint32_t>(r), h.p1 = static_cast<uint32_t>(c);
  h.n_units = l.brows, h.n_entries = blocks;
  h.off_ptr = l.off_ptr, h.off_index = l.off_index;
  set_value_offsets(h, vt, l.off_values, l.off_scales, l.total);
  std::memcpy(out + l.off_ptr, ptr.data(), 4 * ptr.size());
  uint16_t* bcol = reinterpret_cast<uint16_t*>(out + l.off_index);
  void* vals = out + l.off_values;
  int64_t i = 0, nnz = 0;
  for (int64_t b = 0; b < l.brows; ++b)
    for (int64_t j = 0; j < l.kb; ++j) {
      if (!block_nonzero(w, vt, n, k, r, c, b, j)) continue;
      bcol[i] = static_cast<uint16_t>(j);
      for (int a = 0; a < r; ++a)
        for (int e = 0; e < c; ++e) {
          const int64_t row = b * r + a, col = j * c + e;
          if (row >= n || col >= k) continue;
          copy_value(w, vt, row * k + col, vals, i * r * c + a * c + e);
          nnz += nonzero(w, vt, row * k + col);
        }
      ++i;
    }
  put_row_scales(out, l.off_scales, vt, scales, n);
  h.nnz = nnz;
  std::memcpy(out, &h, sizeof h);
}

uint64_t nm_pack_bytes(SparseValues vt, int64_t n, int64_t k, int nm_n, int nm_m) {
  check_vt(vt);
  check_dims(n, k);
  check_nm(nm_n, nm_m);
  return nm_layout(n, k, vt, nm_n, nm_m).total;
}

void nm_pack(const void* w, const float* scales, SparseValues vt, int64_t n, int64_t k, int nm_n, int nm_m,
             uint8_t* out, uint64_t out_size) {
  check_nm(nm_n, nm_m);
  check_input(w, scales, vt, n, k);
  const NmLayout l = nm_layout(n, k, vt, nm_n, nm_m);
  start_blob(out, out_size, l.total);
  SparseHeader h = base_header(FormatId::kNm, vt, n, k);
  h.p0 = static_cast<uint32_t>(nm_n), h.p1 = static_cast<uint32_t>(nm_m);
  h.n_units = n, h.n_entries = l.kc;
  h.off_index = l.off_index;
  set_value_offsets(h, vt, l.off_values, l.off_scales, l.total);
  uint16_t* masks = reinterpret_cast<uint16_t*>(out + l.off_index);
  void* vals = out + l.off_values;
  int64_t nnz = 0;
  for (int64_t row = 0; row < n; ++row)
    for (int64_t ch = 0; ch < l.kc; ++ch) {
      uint32_t m = 0;
      for (int g = 0; g < kNmChunk; g += nm_m) {
        int count = 0;
        for (int e = 0; e < nm_m; ++e) {
          const int64_t col = ch * kNmChunk + g + e;
          if (col < k && nonzero(w, vt, row * k + col)) m |= 1u << (g + e), ++count;
        }
        if (count > nm_n)
          fail("row " + s(row) + ", columns " + s(ch * kNmChunk + g) + ".." + s(ch * kNmChunk + g + nm_m - 1) + " hold " +
               s(count) + " nonzeros, more than N=" + s(nm_n) + " of " + s(nm_n) + ":" + s(nm_m));
        for (int e = 0; e < nm_m && count < nm_n; ++e)  // fill with zero-valued positions
          if (!(m & (1u << (g + e)))) m |= 1u << (g + e), ++count;
      }
      masks[row * l.kc + ch] = static_cast<uint16_t>(m);
      uint32_t bits = m;
      for (int i = 0; i < l.vpc; ++i) {
        const int e = __builtin_ctz(bits);
        bits &= bits - 1;
        const int64_t col = ch * kNmChunk + e;
        if (col < k) {
          copy_value(w, vt, row * k + col, vals, (row * l.kc + ch) * l.vpc + i);
          nnz += nonzero(w, vt, row * k + col);
        }
      }
    }
  put_row_scales(out, l.off_scales, vt, scales, n);
  h.nnz = nnz;
  std::memcpy(out, &h, sizeof h);
}

// ---------------------------------------------------------------- unpack

void sparse_unpack(const SparseView& v, void* w, float* scales) {
  const SparseValues vt = v.values_type;
  std::memset(w, 0, size_t(v.n) * size_t(v.k) * vbytes(vt));
  auto put = [&](int64_t row, int64_t col, int64_t vi) {
    if (row < 0 || row >= v.n || col < 0 || col >= v.k || !value_nonzero(v.values, vt, vi)) return;
    copy_value(v.values, vt, vi, w, row * v.k + col);
  };
  if (v.format == FormatId::kSparseCsr) {
    for (int64_t g = 0; g < v.n_units; ++g)
      for (int lane = 0; lane < kSellLanes; ++lane) {
        const int64_t row = v.perm[g * kSellLanes + lane];
        int64_t col = 0;
        for (int64_t j = v.ptr[g]; j < v.ptr[g + 1]; ++j) {
          col += get_delta(v.deltas, v.index_bits, j, lane);
          put(row, col, j * kSellLanes + lane);
        }
        if (scales && row >= 0 && row < v.n) scales[row] = v.scales[g * kSellLanes + lane];
      }
  } else if (v.format == FormatId::kBsr) {
    for (int64_t b = 0; b < v.n_units; ++b)
      for (int64_t i = v.ptr[b]; i < v.ptr[b + 1]; ++i)
        for (int a = 0; a < v.br; ++a)
          for (int e = 0; e < v.bc; ++e) put(b * v.br + a, int64_t(v.bcol[i]) * v.bc + e, i * v.br * v.bc + a * v.bc + e);
    if (scales)
      for (int64_t row = 0; row < v.n; ++row) scales[row] = v.scales[row];
  } else {
    for (int64_t row = 0; row < v.n; ++row)
      for (int64_t ch = 0; ch < v.kc; ++ch) {
        uint32_t bits = v.masks[row * v.kc + ch];
        for (int i = 0; i < v.vpc && bits; ++i) {
          const int e = __builtin_ctz(bits);
          bits &= bits - 1;
          put(row, ch * kNmChunk + e, (row * v.kc + ch) * v.vpc + i);
        }
      }
    if (scales)
      for (int64_t row = 0; row < v.n; ++row) scales[row] = v.scales[row];
  }
}

}  // namespace slimnn
