#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "formats/header.h"
#include "formats/q8.h"

namespace slimnn {
namespace {

constexpr char kPrefix[] = "slimnn packed weights";

[[noreturn]] void fail(const char* prefix, const std::string& what) { throw FormatError(std::string(prefix) + ": " + what); }
[[noreturn]] void fail(const std::string& what) { fail(kPrefix, what); }

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

struct Q8Layout {
  int64_t np, kp, gs, ng;
  uint64_t off_w, off_s, off_c, off_comp, total;
};

// Shapes are bounded so that every product below fits comfortably in 64 bits.
constexpr int64_t kMaxDim = int64_t{1} << 24;

Q8Layout q8_layout(int64_t n, int64_t k, int64_t group_size) {
  check_dims(kPrefix, n, k, kQ8MaxK);
  const PaddedDims d = padded_dims(kPrefix, n, k, 4, group_size, 4);
  Q8Layout l;
  l.np = d.np, l.kp = d.kp, l.gs = d.gs;
  if (group_size != 0) {
    // Bounded like K (a larger group is one group anyway) so that kp + gs cannot overflow below.
    if (group_size > kQ8MaxK)
      fail("group_size " + std::to_string(group_size) + " is larger than the largest K (" + std::to_string(kQ8MaxK) + ")");
    // One group spanning all of K is per-channel: stored as such, so that each layer has exactly one
    // encoding (a corrupt header cannot turn per-channel into a "group" larger than K and still pass).
    l.gs = group_size < l.kp ? group_size : l.kp;
  }
  l.ng = (l.kp - 1) / l.gs + 1;  // ceil(kp / gs) without kp + gs overflowing for a huge (corrupt) gs
  l.off_w = align64(sizeof(PackedHeader));
  l.off_s = align64(l.off_w + uint64_t(l.np) * uint64_t(l.kp));
  l.off_c = align64(l.off_s + uint64_t(l.ng) * uint64_t(l.np) * 4);
  l.off_comp = align64(l.off_c + uint64_t(l.ng) * uint64_t(l.np) * 4);
  l.total = align64(l.off_comp + uint64_t(l.np) * 4);
  return l;
}

// comp[n] = sum_g scales[g][n] * colsum[g][n], accumulated in double in group order, rounded once to float.
// Packing and the full check both use this, so the check can demand the stored value bit for bit.
float q8_comp(const float* scales, const int32_t* colsum, int64_t stride, int64_t n_groups) {
  double c = 0;
  for (int64_t g = 0; g < n_groups; ++g) c += double(scales[g * stride]) * colsum[g * stride];
  return static_cast<float>(c);
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

void check_dims(const char* prefix, int64_t n, int64_t k, int64_t max_k) {
  if (n <= 0 || k <= 0)
    fail(prefix, "N and K must be positive, got N=" + std::to_string(n) + ", K=" + std::to_string(k));
  if (n > kMaxDim || k > max_k)
    fail(prefix, "shape too large: N=" + std::to_string(n) + " (max " + std::to_string(kMaxDim) + "), K=" +
                     std::to_string(k) + " (max " + std::to_string(max_k) + ")");
}

PaddedDims padded_dims(const char* prefix, int64_t n, int64_t k, int64_t k_multiple, int64_t group_size,
                       int64_t group_multiple) {
  PaddedDims d;
  d.np = round_up(n, 16);
  d.kp = round_up(k, k_multiple);
  if (group_size != 0 && (group_size < group_multiple || group_size % group_multiple != 0))
    fail(prefix, "group_size must be a positive multiple of " + std::to_string(group_multiple) +
                     " (or 0 for per-channel), got " + std::to_string(group_size));
  d.gs = group_size == 0 ? d.kp : group_size;
  return d;
}

PackedHeader parse_header(const uint8_t* data, size_t size, FormatId expected) {
  if (size < sizeof(PackedHeader))
    fail("blob of " + std::to_string(size) + " bytes is shorter than the " + std::to_string(sizeof(PackedHeader)) +
         "-byte header (truncated?)");
  if (data == nullptr) fail("null blob");
  PackedHeader h;
  std::memcpy(&h, data, sizeof h);
  if (std::memcmp(h.magic, kMagic, 4) != 0) fail("bad magic (not a slimnn packed weight blob)");
  if (h.version != kFormatVersion)
    fail("format version " + std::to_string(h.version) + " is not supported (this build reads version " +
         std::to_string(kFormatVersion) + ")");
  if (h.format != static_cast<uint16_t>(expected))
    fail("format id " + std::to_string(h.format) + " where " + std::to_string(static_cast<int>(expected)) +
         " was expected");
  if (h.header_bytes != sizeof(PackedHeader)) fail("header size " + std::to_string(h.header_bytes) + " is wrong");
  if (h.flags != 0) fail("unknown flags " + std::to_string(h.flags));
  if (h.total_bytes != size)
    fail("header says " + std::to_string(h.total_bytes) + " bytes but the blob has " + std::to_string(size) +
         " (truncated or padded?)");
  return h;
}

uint64_t q8_blob_bytes(int64_t n, int64_t k, int64_t group_size) { return q8_layout(n, k, group_size).total; }

Q8View q8_view(const uint8_t* blob, size_t size, bool full_check) {
  const PackedHeader h = parse_header(blob, size, FormatId::kQ8);
  // q8 keeps `reserved` zero (formats that use it, like q4, validate their own fields there).
  for (uint8_t b : h.reserved)
    if (b != 0) fail("reserved header bytes are not zero (written by a newer slimnn, or corrupt)");
  // Checked here too, before round_up below touches the untrusted K (q8_layout repeats the check).
  if (h.n <= 0 || h.k <= 0 || h.n > kMaxDim || h.k > kQ8MaxK)
    fail("shape out of range: N=" + std::to_string(h.n) + ", K=" + std::to_string(h.k));
  const int64_t gs_arg = h.group_size == round_up(h.k, 4) && h.n_groups == 1 ? 0 : h.group_size;
  const Q8Layout l = q8_layout(h.n, h.k, gs_arg);
  if (h.np != l.np || h.kp != l.kp || h.group_size != l.gs || h.n_groups != l.ng || h.off_weights != l.off_w ||
      h.off_scales != l.off_s || h.off_colsum != l.off_c || h.off_comp != l.off_comp || h.total_bytes != l.total)
    fail("header fields are inconsistent with N=" + std::to_string(h.n) + ", K=" + std::to_string(h.k));
  if (reinterpret_cast<uintptr_t>(blob) % 4 != 0) fail("blob is not 4-byte aligned");
  Q8View v;
  v.n = h.n, v.k = h.k, v.np = h.np, v.kp = h.kp, v.group_size = h.group_size, v.n_groups = h.n_groups;
  v.w = reinterpret_cast<const int8_t*>(blob + h.off_weights);
  v.scales = reinterpret_cast<const float*>(blob + h.off_scales);
  v.colsum = reinterpret_cast<const int32_t*>(blob + h.off_colsum);
  v.comp = reinterpret_cast<const float*>(blob + h.off_comp);
  if (!full_check) return v;
  for (int64_t g = 0; g < v.n_groups; ++g) {
    for (int64_t j = 0; j < v.np; ++j) {
      const float s = v.scales[g * v.np + j];
      if (!std::isfinite(s)) fail("non-finite scale at group " + std::to_string(g) + ", column " + std::to_string(j));
      const int8_t* panel = v.w + (j / 16) * 16 * v.kp;
      int32_t sum = 0;
      const int64_t k1 = std::min<int64_t>(v.kp, (g + 1) * v.group_size);
      for (int64_t kk = g * v.group_size; kk < k1; ++kk) {
        const int8_t q = panel[(kk / 4) * 64 + (j % 16) * 4 + kk % 4];
        if ((kk >= v.k || j >= v.n) && q != 0) fail("non-zero padding weight at column " + std::to_string(j));
        sum += q;
      }
      if (sum != v.colsum[g * v.np + j]) fail("column sums do not match the weights (corrupt blob)");
      if (j >= v.n && !same_bits(s, 0.0f)) fail("non-zero scale in padding column " + std::to_string(j));
    }
  }
  for (int64_t j = 0; j < v.np; ++j)
    if (!same_bits(v.comp[j], q8_comp(v.scales + j, v.colsum + j, v.np, v.n_groups)))
      fail("compensation term of column " + std::to_string(j) + " does not match scales x column sums (corrupt blob)");
  return v;
}

void q8_pack(const int8_t* q, const float* scales, int64_t n, int64_t k, int64_t group_size, uint8_t* out) {
  const Q8Layout l = q8_layout(n, k, group_size);
  for (int64_t i = 0; i < int64_t(l.ng) * n; ++i)
    if (!std::isfinite(scales[i])) fail("non-finite scale at index " + std::to_string(i));
  std::memset(out, 0, l.total);
  PackedHeader h = packed_header(FormatId::kQ8, n, k, l);
  std::memcpy(out, &h, sizeof h);
  int8_t* w = reinterpret_cast<int8_t*>(out + l.off_w);
  float* s = reinterpret_cast<float*>(out + l.off_s);
  int32_t* cs = reinterpret_cast<int32_t*>(out + l.off_c);
  float* comp = reinterpret_cast<float*>(out + l.off_comp);
  for (int64_t j = 0; j < n; ++j) {
    int8_t* panel = w + (j / 16) * 16 * l.kp;
    const int64_t lane = j % 16;
    for (int64_t kk = 0; kk < k; ++kk) panel[(kk / 4) * 64 + lane * 4 + kk % 4] = q[j * k + kk];
    for (int64_t g = 0; g < l.ng; ++g) {
      int32_t sum = 0;
      const int64_t k1 = std::min<int64_t>(k, (g + 1) * l.gs);
      for (int64_t kk = g * l.gs; kk < k1; ++kk) sum += q[j * k + kk];
      cs[g * l.np + j] = sum;
      s[g * l.np + j] = scales[g * n + j];
    }
    comp[j] = q8_comp(s + j, cs + j, l.np, l.ng);
  }
}

void q8_unpack(const Q8View& v, int8_t* q, float* scales) {
  for (int64_t j = 0; j < v.n; ++j) {
    const int8_t* panel = v.w + (j / 16) * 16 * v.kp;
    for (int64_t kk = 0; kk < v.k; ++kk) q[j * v.k + kk] = panel[(kk / 4) * 64 + (j % 16) * 4 + kk % 4];
    for (int64_t g = 0; g < v.n_groups; ++g) scales[g * v.n + j] = v.scales[g * v.np + j];
  }
}

}  // namespace slimnn
