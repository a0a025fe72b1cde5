// The native driver's shared checking helpers (tests/native): failure counting, the deterministic generator,
// the forced ISA levels, exact and tolerance comparisons. test_kernels.cc (qgemm / q4gemm / blobs) and
// test_families.cc (act, lowrank, attention, conv, spmm) both use them.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common/isa.h"

namespace slimnn {
namespace native_test {

constexpr double kMaxFactor = 4.0;  // tests/tolerances.py MAX_FACTOR
constexpr double kEps = 1.1920928955078125e-07;

inline int g_failures = 0, g_checks = 0;
inline std::set<std::string> g_used;  // kernels a call returned or a test ran directly

inline void fail(const std::string& what) {
  ++g_failures;
  if (g_failures <= 40) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
}

// Deterministic across compilers and CPUs (std distributions are not).
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint32_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return uint32_t(s >> 16);
  }
  int range(int lo, int hi) { return lo + int(next() % uint32_t(hi - lo + 1)); }
  float uniform(float lo, float hi) { return lo + (hi - lo) * float(next() & 0xFFFFFF) / float(0xFFFFFF); }
};

// A zeroed, 64-byte aligned byte buffer (packed blobs).
struct AlignedBytes {
  std::vector<uint8_t> buf;
  uint8_t* p = nullptr;
  size_t size = 0;
  explicit AlignedBytes(size_t n) : buf(n + 64), size(n) {
    p = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;
  }
};

// ISA levels to force, lowest first: the bits this CPU and this build both have.
inline std::vector<uint32_t> levels() {
  std::vector<uint32_t> v;
  const uint32_t have = detected_isa_mask() & built_isa_mask();
  for (int i = 0; i < kNumIsas; ++i)
    if (have & (1u << i)) v.push_back(1u << i);
  return v;
}

// |y - ref| <= MAX_FACTOR * eps * sqrt(k) * mag elementwise (tests/tolerances.py); NaN only where ref is NaN.
inline void check_close(const std::vector<float>& y, const std::vector<float>& ref, const std::vector<double>& mag,
                        int64_t k, const std::string& what) {
  ++g_checks;
  const double unit = kEps * std::sqrt(double(k < 1 ? 1 : k));
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isnan(ref[i]) && std::isnan(y[i])) continue;
    const double err = std::fabs(double(y[i]) - double(ref[i]));
    if (!(err <= kMaxFactor * unit * mag[i] + 1e-30)) {
      char b[200];
      std::snprintf(b, sizeof b, " at %zu: %.9g vs reference %.9g (bound %.3g)", i, y[i], ref[i],
                    kMaxFactor * unit * mag[i]);
      fail(what + b);
      return;
    }
  }
}

template <typename T>
void check_exact(const std::vector<T>& a, const std::vector<T>& b, const std::string& what) {
  ++g_checks;
  if (a.size() != b.size() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0) {
    size_t i = 0;
    while (i < a.size() && i < b.size() && std::memcmp(&a[i], &b[i], sizeof(T)) == 0) ++i;
    fail(what + " differs at element " + std::to_string(i));
  }
}

// run(mask, &used) under each forced ISA level in turn: the kernel it reports must not be above the level,
// and its output must be within the tolerance of ref (check_close). Info: a kernel table entry (isa, name).
template <typename Info, typename Run>
void check_forced(const std::vector<float>& ref, const std::vector<double>& mag, int64_t k, const std::string& what,
                  Run run) {
  for (uint32_t level : levels()) {
    force_isa(level);
    const Info* used = nullptr;
    const std::vector<float> y = run(current_isa_mask(), &used);
    force_isa(0);
    if (used->isa > level) fail(std::string(used->name) + " chosen under forced " + isa_name(level));
    check_close(y, ref, mag, k, std::string(used->name) + what + " forced " + isa_name(level));
  }
}

// The kernels of the families test_families.cc covers, as (name, ISA bit), for the coverage check.
void family_kernels(std::vector<std::pair<std::string, uint32_t>>* all);
void test_families();

}  // namespace native_test
}  // namespace slimnn
