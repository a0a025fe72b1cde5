// The versioned header that starts every packed weight blob.
//
// Why a header: packed weights travel inside state_dicts and files that slimnn did not write. Every field
// the kernels rely on (shapes, paddings, section offsets) is in the header and is checked against the blob
// length before any kernel reads a byte, so a truncated, corrupt or hostile blob is rejected with a message
// instead of being read out of bounds. Validation never uses assert (asserts vanish in release builds).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

namespace slimnn {

constexpr char kMagic[4] = {'S', 'L', 'N', 'N'};
constexpr uint16_t kFormatVersion = 1;

// Format ids (stable: they are stored in files).
enum class FormatId : uint16_t {
  kQ8 = 1,  // int8 weights, per-channel or group-wise fp32 scales along K
  kQ4 = 2,  // 4-bit weights, group-wise along K, optional zero points (formats/q4.h; uses `reserved`)
  // 2 is taken by the int4 format.
  kSparseCsr = 3,  // sliced CSR, delta-coded indices, fp32 or int8 values (formats/sparse.h)
  kBsr = 4,        // block-sparse rows, small R x C blocks (formats/sparse.h)
  kNm = 5,         // N:M structured sparsity, bitmask + values (formats/sparse.h)
  kBitmap = 6,     // unstructured sparsity, a 64-bit mask per row and 64 columns + int8 values (formats/bitmap.h)
};

// 128 bytes, little-endian, all sections 64-byte aligned relative to the blob start.
struct PackedHeader {
  char magic[4];
  uint16_t version;
  uint16_t format;
  uint32_t header_bytes;  // sizeof(PackedHeader)
  uint32_t flags;         // reserved, 0
  int64_t n, k;           // logical output and input features
  int64_t np, kp;         // padded: np multiple of 16, kp multiple of 4
  int64_t group_size;     // along K; a multiple of 4; equals kp for per-channel
  int64_t n_groups;       // ceil(k / group_size)
  uint64_t off_weights;   // int8 [np/16][kp/4][16][4]
  uint64_t off_scales;    // fp32 [n_groups][np]
  uint64_t off_colsum;    // int32 [n_groups][np]: sum of the group's weights per column
  uint64_t off_comp;      // fp32 [np]: sum_g scales[g][n] * colsum[g][n]
  uint64_t total_bytes;   // the whole blob
  uint8_t reserved[24];
};
static_assert(sizeof(PackedHeader) == 128, "the packed header is 128 bytes on every platform");

// Thrown for any malformed blob; the bindings turn it into ValueError.
class FormatError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Parses and validates a blob of `size` bytes. Throws FormatError naming the first problem found.
PackedHeader parse_header(const uint8_t* data, size_t size, FormatId expected);

inline uint64_t align64(uint64_t x) { return (x + 63) & ~uint64_t{63}; }

// What the q8 and q4 layouts (header.cc, q4.cc) check and pad alike; errors are FormatError("<prefix>: ...").
// check_dims: N and K positive, N <= 2^24 and K <= max_k. padded_dims: np = N rounded up to 16, kp = K rounded
// up to k_multiple, gs = kp for group_size 0 (per channel), else group_size itself, which must then be a
// positive multiple of group_multiple.
struct PaddedDims {
  int64_t np, kp, gs;
};
void check_dims(const char* prefix, int64_t n, int64_t k, int64_t max_k);
PaddedDims padded_dims(const char* prefix, int64_t n, int64_t k, int64_t k_multiple, int64_t group_size,
                       int64_t group_multiple);

// A zeroed header of type H (PackedHeader or another format's header: each starts with magic, version,
// format and header_bytes) with those leading fields set for format f. The one header writer of every format.
template <typename H>
H new_header(FormatId f) {
  H h;
  std::memset(&h, 0, sizeof h);
  std::memcpy(h.magic, kMagic, 4);
  h.version = kFormatVersion;
  h.format = static_cast<uint16_t>(f);
  h.header_bytes = sizeof(H);
  return h;
}

// The PackedHeader of a q8 or q4 blob of n x k weights with layout l (its np, kp, gs, ng, section offsets
// off_w / off_s / off_c / off_comp and total).
template <typename Layout>
PackedHeader packed_header(FormatId f, int64_t n, int64_t k, const Layout& l) {
  PackedHeader h = new_header<PackedHeader>(f);
  h.n = n, h.k = k, h.np = l.np, h.kp = l.kp, h.group_size = l.gs, h.n_groups = l.ng;
  h.off_weights = l.off_w, h.off_scales = l.off_s, h.off_colsum = l.off_c, h.off_comp = l.off_comp;
  h.total_bytes = l.total;
  return h;
}

}  // namespace slimnn
