#include "common/cache.h"

#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace slimnn {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// Walks one deterministic-cache-parameters leaf: subleaf i describes one cache until type 0.
bool from_cpuid_leaf(uint32_t leaf, CacheSizes* out) {
  bool any = false;
  for (uint32_t i = 0; i < 16; ++i) {
    uint32_t a, b, c, d;
    __cpuid_count(leaf, i, a, b, c, d);
    const uint32_t type = a & 0x1f;  // 1 data, 2 instruction, 3 unified
    if (type == 0) break;
    if (type == 2) continue;
    const int level = (a >> 5) & 0x7;
    const int64_t ways = ((b >> 22) & 0x3ff) + 1, parts = ((b >> 12) & 0x3ff) + 1, line = (b & 0xfff) + 1;
    const int64_t sets = int64_t(c) + 1;
    const int64_t bytes = ways * parts * line * sets;
    if (level == 1) out->l1d = bytes;
    if (level == 2) out->l2 = bytes;
    if (level == 3) out->l3 = bytes;
    any = true;
  }
  return any && out->l1d > 0 && out->l2 > 0;
}

bool from_cpuid(CacheSizes* out) {
  uint32_t a, b, c, d;
  __cpuid(0, a, b, c, d);
  const uint32_t max_leaf = a;
  const bool amd = b == 0x68747541u || b == 0x6f677948u;  // "Auth"enticAMD, "Hygo"nGenuine
  if (amd) {
    __cpuid(0x80000000u, a, b, c, d);
    if (a < 0x8000001Du) return false;
    __cpuid(0x80000001u, a, b, c, d);
    if (((c >> 22) & 1) == 0) return false;  // no topology extensions: no leaf 0x8000001D
    return from_cpuid_leaf(0x8000001Du, out);
  }
  return max_leaf >= 4 && from_cpuid_leaf(4, out);
}
#else
bool from_cpuid(CacheSizes*) { return false; }
#endif

bool from_sysconf(CacheSizes* out) {
#if defined(_SC_LEVEL1_DCACHE_SIZE) && defined(_SC_LEVEL2_CACHE_SIZE)
  const long l1 = sysconf(_SC_LEVEL1_DCACHE_SIZE), l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (l1 <= 0 || l2 <= 0) return false;
  out->l1d = l1;
  out->l2 = l2;
#if defined(_SC_LEVEL3_CACHE_SIZE)
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) out->l3 = l3;
#endif
  return true;
#else
  (void)out;
  return false;
#endif
}

CacheSizes detect() {
  CacheSizes s{0, 0, 0, "cpuid"};
  if (from_cpuid(&s)) return s;
  s = CacheSizes{0, 0, 0, "sysconf"};
  if (from_sysconf(&s)) return s;
  return CacheSizes{32 << 10, 1 << 20, 8 << 20, "default"};
}

}  // namespace

const CacheSizes& cache_sizes() {
  static const CacheSizes sizes = detect();  // immutable once detected: nothing can force it
  return sizes;
}

}  // namespace slimnn
