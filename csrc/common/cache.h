// The data-cache sizes the CPU reports, for blocking decisions (kernels/wogemm): detected once.
//
// Source, in order: CPUID's deterministic cache parameters (leaf 4 on Intel, leaf 0x8000001D on AMD with
// topology extensions), then sysconf(_SC_LEVEL*_CACHE_SIZE), then conservative defaults (32 KiB, 1 MiB,
// 8 MiB) on CPUs or systems that report neither. Sizes are per instance (L1d and L2: per core on every x86
// seen so far; L3: the whole slice the core shares).
#pragma once
#include <cstdint>

namespace slimnn {

struct CacheSizes {
  int64_t l1d, l2, l3;  // bytes
  const char* source;   // "cpuid", "sysconf" or "default"
};

const CacheSizes& cache_sizes();

}  // namespace slimnn
