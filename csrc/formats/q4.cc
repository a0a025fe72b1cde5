// q4 packing, unpacking and validation (see formats/q4.h). Plain C++, no ISA flags.
#include "formats/q4.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

namespace slimnn {
namespace {

constexpr char kPrefix[] = "slimnn packed q4 weights";

[[noreturn]] void fail(const std::string& what) { throw FormatError(std::string(kPrefix) + ": " + what); }

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

int scale_bytes(ScaleDtype d) { return d == ScaleDtype::kF32 ? 4 : 2; }

struct Q4Layout {
  int64_t np, kp, gs, ng;
  uint64_t off_w, off_s, off_z, off_o, off_c, off_comp, total;
};

Q4Layout q4_layout(int64_t n, int64_t k, int64_t group_size, ScaleDtype sd, int zero_mode) {
  check_dims(kPrefix, n, k, kQ4MaxK);
  if (sd != ScaleDtype::kF32 && sd != ScaleDtype::kF16 && sd != ScaleDtype::kBF16)
    fail("unknown scale dtype code " + std::to_string(int(sd)));
  if (zero_mode < kQ4Symmetric || zero_mode > kQ4FloatZero)
    fail("unknown zero-point mode " + std::to_string(zero_mode) +
         " (0 symmetric, 1 integer, 2 float; a newer slimnn may have written this blob)");
  const PaddedDims d = padded_dims(kPrefix, n, k, 8, group_size, 32);
  Q4Layout l;
  l.np = d.np, l.kp = d.kp, l.gs = d.gs;
  l.ng = (l.kp + l.gs - 1) / l.gs;
  const uint64_t ng = uint64_t(l.ng), np = uint64_t(l.np);
  l.off_w = align64(sizeof(PackedHeader));
  l.off_s = align64(l.off_w + np * uint64_t(l.kp) / 2);
  uint64_t end = align64(l.off_s + ng * np * scale_bytes(sd));
  l.off_z = 0;
  if (zero_mode != kQ4Symmetric) {
    l.off_z = end;
    end = align64(end + ng * np * (zero_mode == kQ4FloatZero ? scale_bytes(sd) : 1));
  }
  l.off_o = 0;
  if (zero_mode == kQ4FloatZero) {  // the offsets s (8 - z), fp32: derived once here, not per call
    l.off_o = end;
    end = align64(end + ng * np * 4);
  }
  l.off_c = 0;
  if (l.ng == 1) {
    l.off_c = end;
    end = align64(end + np * 4);
  }
  l.off_comp = end;
  l.total = align64(end + np * 4);
  return l;
}

float half_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else {
    const float f = std::ldexp(float(man), -24);  // subnormal or zero: exact
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Nibble of column c (in its panel) and row k: see the layout in q4.h.
inline uint8_t nibble(const uint8_t* panel, int64_t c, int64_t k) {
  const uint8_t b = panel[(k / 8) * 64 + c * 4 + (k % 4)];
  return (k % 8) < 4 ? (b & 0x0F) : (b >> 4);
}

}  // namespace

float q4_scale_to_f32(const void* scales, ScaleDtype dtype, int64_t i) {
  if (dtype == ScaleDtype::kF32) {
    float f;
    std::memcpy(&f, static_cast<const uint8_t*>(scales) + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(scales) + 2 * i, 2);
  if (dtype == ScaleDtype::kF16) return half_to_f32(h);
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint64_t q4_blob_bytes(int64_t n, int64_t k, int64_t group_size, ScaleDtype scale_dtype, int zero_mode) {
  return q4_layout(n, k, group_size, scale_dtype, zero_mode).total;
}

Q4View q4_view(const uint8_t* blob, size_t size, bool full_check) {
  const PackedHeader h = parse_header(blob, size, FormatId::kQ4);
  Q4HeaderExt ext;
  std::memcpy(&ext, h.reserved, sizeof ext);
  for (uint8_t b : ext.pad)
    if (b != 0) fail("reserved header bytes are not zero");
  if (ext.asymmetric > kQ4FloatZero)
    fail("unknown zero-point mode " + std::to_string(ext.asymmetric) +
         " (0 symmetric, 1 integer, 2 float; a newer slimnn may have written this blob)");
  const ScaleDtype sd = static_cast<ScaleDtype>(ext.scale_dtype);
  const int64_t gs_arg = h.group_size == round_up(h.k, 8) && h.n_groups == 1 ? 0 : h.group_size;
  const Q4Layout l = q4_layout(h.n, h.k, gs_arg, sd, ext.asymmetric);
  if (h.np != l.np || h.kp != l.kp || h.group_size != l.gs || h.n_groups != l.ng || h.off_weights != l.off_w ||
      h.off_scales != l.off_s || ext.off_zeros != l.off_z || h.off_colsum != l.off_c || h.off_comp != l.off_comp ||
      h.total_bytes != l.total)
    fail("header fields are inconsistent with N=" + std::to_string(h.n) + ", K=" + std::to_string(h.k));
  if (reinterpret_cast<uintptr_t>(blob) % 4 != 0) fail("blob is not 4-byte aligned");
  Q4View v;
  v.n = h.n, v.k = h.k, v.np = h.np, v.kp = h.kp, v.group_size = h.group_size, v.n_groups = h.n_groups;
  v.scale_dtype = sd;
  v.asymmetric = ext.asymmetric != kQ4Symmetric;
  v.w = blob + h.off_weights;
  v.scales = blob + h.off_scales;
  v.zeros = ext.asymmetric == kQ4IntZero ? blob + ext.off_zeros : nullptr;
  v.fzeros = ext.asymmetric == kQ4FloatZero ? blob + ext.off_zeros : nullptr;
  v.offsets = ext.asymmetric == kQ4FloatZero ? reinterpret_cast<const float*>(blob + l.off_o) : nullptr;
  v.colsum = v.n_groups == 1 ? reinterpret_cast<const int32_t*>(blob + h.off_colsum) : nullptr;
  v.comp = reinterpret_cast<const float*>(blob + h.off_comp);
  if (!full_check) return v;
  for (int64_t j = 0; j < v.np; ++j) {
    const uint8_t* panel = v.w + (j / 16) * 8 * v.kp;
    double comp = 0;
    for (int64_t g = 0; g < v.n_groups; ++g) {
      const float s = q4_scale_to_f32(v.scales, sd, q4_sz_index(g, j, v.n_groups));
      if (!std::isfinite(s)) fail("non-finite scale at group " + std::to_string(g) + ", column " + std::to_string(j));
      const int32_t z = v.zeros ? v.zeros[q4_sz_index(g, j, v.n_groups)] : 8;
      if (z > 15) fail("zero point above 15 at group " + std::to_string(g) + ", column " + std::to_string(j));
      if (j >= v.n && v.zeros && z != 0) fail("non-zero padding zero point at column " + std::to_string(j));
      if (v.fzeros) {
        const float fz = q4_scale_to_f32(v.fzeros, sd, q4_sz_index(g, j, v.n_groups));
        if (!std::isfinite(fz)) fail("non-finite zero point at group " + std::to_string(g) + ", column " + std::to_string(j));
        if (j >= v.n && fz != 0.0f) fail("non-zero padding zero point at column " + std::to_string(j));
        const float o = v.offsets[q4_sz_index(g, j, v.n_groups)], want = s * (8.0f - fz);
        if (std::memcmp(&o, &want, 4) != 0) fail("offsets do not match the scales and zero points (corrupt blob)");
      }
      const int64_t k0 = g * v.group_size, k1 = std::min<int64_t>(v.kp, k0 + v.group_size);
      int32_t sum = 0;
      for (int64_t kk = k0; kk < k1; ++kk) {
        const int32_t u = nibble(panel, j % 16, kk);
        if (kk >= v.k || j >= v.n) {
          if (u != 0) fail("non-zero padding weight at column " + std::to_string(j));
          continue;
        }
        sum += u - z;
      }
      if (v.colsum && sum != v.colsum[j]) fail("column sums do not match the weights (corrupt blob)");
      comp += double(s) * sum;
    }
    if (j < v.n && static_cast<float>(comp) != v.comp[j]) fail("row sums do not match the weights (corrupt blob)");
    if (j >= v.n && v.comp[j] != 0.0f) fail("non-zero padding row sum at column " + std::to_string(j));
  }
  return v;
}

void q4_pack(const uint8_t* codes, const void* scales, const uint8_t* zeros, const void* fzeros, int64_t n,
             int64_t k, int64_t group_size, ScaleDtype sd, uint8_t* out) {
  if (zeros && fzeros) fail("give integer or float zero points, not both");
  const bool asym = zeros != nullptr;
  const int mode = asym ? kQ4IntZero : fzeros ? kQ4FloatZero : kQ4Symmetric;
  const Q4Layout l = q4_layout(n, k, group_size, sd, mode);
  const int sb = scale_bytes(sd);
  for (int64_t i = 0; i < l.ng * n; ++i)
    if (!std::isfinite(q4_scale_to_f32(scales, sd, i))) fail("non-finite scale at index " + std::to_string(i));
  for (int64_t i = 0; i < n * k; ++i)
    if (codes[i] > 15) fail("code " + std::to_string(codes[i]) + " above 15 at index " + std::to_string(i));
  if (asym)
    for (int64_t i = 0; i < l.ng * n; ++i)
      if (zeros[i] > 15) fail("zero point " + std::to_string(zeros[i]) + " above 15 at index " + std::to_string(i));
  if (fzeros)
    for (int64_t i = 0; i < l.ng * n; ++i)
      if (!std::isfinite(q4_scale_to_f32(fzeros, sd, i))) fail("non-finite zero point at index " + std::to_string(i));
  std::memset(out, 0, l.total);
  PackedHeader h = packed_header(FormatId::kQ4, n, k, l);
  Q4HeaderExt ext;
  std::memset(&ext, 0, sizeof ext);
  ext.off_zeros = l.off_z;
  ext.scale_dtype = static_cast<uint8_t>(sd);
  ext.asymmetric = static_cast<uint8_t>(mode);
  std::memcpy(h.reserved, &ext, sizeof ext);
  std::memcpy(out, &h, sizeof h);
  uint8_t* w = out + l.off_w;
  uint8_t* s = out + l.off_s;
  uint8_t* zs = asym ? out + l.off_z : nullptr;
  int32_t* cs = l.ng == 1 ? reinterpret_cast<int32_t*>(out + l.off_c) : nullptr;
  float* comp = reinterpret_cast<float*>(out + l.off_comp);
  for (int64_t j = 0; j < n; ++j) {
    uint8_t* panel = w + (j / 16) * 8 * l.kp;
    const int64_t c = j % 16;
    for (int64_t kk = 0; kk < k; ++kk) {
      uint8_t& b = panel[(kk / 8) * 64 + c * 4 + (kk % 4)];
      const uint8_t u = codes[j * k + kk];
      b = (kk % 8) < 4 ? uint8_t((b & 0xF0) | u) : uint8_t((b & 0x0F) | (u << 4));
    }
    double cm = 0;
    for (int64_t g = 0; g < l.ng; ++g) {
      std::memcpy(s + q4_sz_index(g, j, l.ng) * sb, static_cast<const uint8_t*>(scales) + (g * n + j) * sb, sb);
      const int32_t z = asym ? zeros[g * n + j] : 8;
      if (asym) zs[q4_sz_index(g, j, l.ng)] = uint8_t(z);
      if (fzeros) {
        std::memcpy(out + l.off_z + q4_sz_index(g, j, l.ng) * sb,
                    static_cast<const uint8_t*>(fzeros) + (g * n + j) * sb, sb);
        const float o = q4_scale_to_f32(scales, sd, g * n + j) * (8.0f - q4_scale_to_f32(fzeros, sd, g * n + j));
        std::memcpy(out + l.off_o + q4_sz_index(g, j, l.ng) * 4, &o, 4);
      }
      int32_t sum = 0;
      const int64_t k1 = std::min<int64_t>(k, (g + 1) * l.gs);
      for (int64_t kk = g * l.gs; kk < k1; ++kk) sum += int32_t(codes[j * k + kk]) - z;
      if (cs) cs[j] = sum;
      cm += double(q4_scale_to_f32(scales, sd, g * n + j)) * sum;
    }
    comp[j] = static_cast<float>(cm);
  }
}

void q4_unpack(const Q4View& v, uint8_t* codes, void* scales, uint8_t* zeros, void* fzeros) {
  const int sb = scale_bytes(v.scale_dtype);
  for (int64_t j = 0; j < v.n; ++j) {
    const uint8_t* panel = v.w + (j / 16) * 8 * v.kp;
    for (int64_t kk = 0; kk < v.k; ++kk) codes[j * v.k + kk] = nibble(panel, j % 16, kk);
    for (int64_t g = 0; g < v.n_groups; ++g) {
      std::memcpy(static_cast<uint8_t*>(scales) + (g * v.n + j) * sb,
                  static_cast<const uint8_t*>(v.scales) + q4_sz_index(g, j, v.n_groups) * sb, sb);
      if (v.zeros && zeros) zeros[g * v.n + j] = v.zeros[q4_sz_index(g, j, v.n_groups)];
      if (v.fzeros && fzeros)
        std::memcpy(static_cast<uint8_t*>(fzeros) + (g * v.n + j) * sb,
                    static_cast<const uint8_t*>(v.fzeros) + q4_sz_index(g, j, v.n_groups) * sb, sb);
    }
  }
}

}  // namespace slimnn
