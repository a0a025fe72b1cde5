#include "kernels/embed/embed.h"

#include <algorithm>
#include <cstring>

#include "common/scratch.h"
#include "common/threadpool.h"

namespace slimnn {
namespace {

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: renormalize
      exp = 127 - 15 + 1;
      while ((man & 0x400) == 0) man <<= 1, --exp;
      u = sign | (exp << 23) | ((man & 0x3FF) << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7F800000u | (man << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float scale_at(const void* scales, ScaleDtype dt, int64_t i) {
  switch (dt) {
    case ScaleDtype::kF32: return static_cast<const float*>(scales)[i];
    case ScaleDtype::kF16: return f16_to_f32(static_cast<const uint16_t*>(scales)[i]);
    default: return bf16_to_f32(static_cast<const uint16_t*>(scales)[i]);
  }
}

template <typename Row>
int64_t gather(int64_t rows, const int64_t* ids, int64_t n_ids, int nthreads, Row row) {
  for (int64_t i = 0; i < n_ids; ++i)
    if (ids[i] < 0 || ids[i] >= rows) return i;
  const int64_t chunk = 16;
  auto task = [&](int64_t t) {
    for (int64_t i = t * chunk; i < std::min(n_ids, (t + 1) * chunk); ++i) row(i, ids[i]);
  };
  parallel_for((n_ids + chunk - 1) / chunk, std::max(1, nthreads), task);
  return -1;
}

}  // namespace

int64_t embed_gather_q8(const Q8View& v, const int64_t* ids, int64_t n_ids, float* out, int64_t ldo, int nthreads) {
  return gather(v.n, ids, n_ids, nthreads, [&](int64_t i, int64_t n) {
    const int8_t* base = v.w + (n / 16) * 16 * v.kp + (n % 16) * 4;
    float* o = out + i * ldo;
    for (int64_t k = 0; k < v.k; ++k) {
      const int64_t g = v.n_groups == 1 ? 0 : k / v.group_size;
      o[k] = float(base[(k / 4) * 64 + k % 4]) * v.scales[g * v.np + n];
    }
  });
}

int64_t embed_gather_q4(const Q4View& v, const int64_t* ids, int64_t n_ids, float* out, int64_t ldo, int nthreads) {
  return gather(v.n, ids, n_ids, nthreads, [&](int64_t i, int64_t n) {
    const uint8_t* base = v.w + (n / 16) * 16 * (v.kp / 2) + (n % 16) * 4;
    float* o = out + i * ldo;
    for (int64_t k = 0; k < v.k; ++k) {
      const int64_t g = v.n_groups == 1 ? 0 : k / v.group_size;
      const int64_t si = q4_sz_index(g, n, v.n_groups);
      const uint8_t byte = base[(k / 8) * 64 + k % 4];
      const int code = (k % 8) < 4 ? (byte & 0x0F) : (byte >> 4);
      const float zero = v.zeros ? float(v.zeros[si]) : v.fzeros ? scale_at(v.fzeros, v.scale_dtype, si) : 8.0f;
      o[k] = scale_at(v.scales, v.scale_dtype, si) * (float(code) - zero);
    }
  });
}

}  // namespace slimnn
