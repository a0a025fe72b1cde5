// The selectors' shared rules over a family's kernel table (the array its kernels.inc expands to, best
// first). Every table entry type has `uint32_t isa` (one ISA bit) and `const char* name`; gemv-aware
// selection also needs `bool gemv`. Tables are built once at static initialization, then immutable, so
// these lookups take no lock.
#pragma once
#include <cstdint>
#include <cstring>

namespace slimnn {

template <typename T, int N>
constexpr int table_size(const T (&)[N]) {
  return N;
}

// Hands out the table: *count = its size; returns its first entry.
template <typename T, int N>
const T* table_out(const T (&table)[N], int* count) {
  *count = N;
  return table;
}

// The entry for m rows: among the entries `keep` accepts, only those of the best ISA in `isa_mask` compete;
// the first of them whose gemv flag says (m == 1), else the first of them; null if none is available.
template <typename T, int N, typename Keep>
const T* select_for_rows(const T (&table)[N], int64_t m, uint32_t isa_mask, Keep keep) {
  const T* first = nullptr;
  for (const T& k : table) {
    if (!keep(k) || (k.isa & isa_mask) == 0) continue;
    if (first == nullptr) first = &k;
    if (first->isa != k.isa) break;  // only kernels of the best available ISA compete
    if (k.gemv == (m == 1)) return &k;
  }
  return first;
}

template <typename T, int N>
const T* select_for_rows(const T (&table)[N], int64_t m, uint32_t isa_mask) {
  return select_for_rows(table, m, isa_mask, [](const T&) { return true; });
}

// The first entry whose ISA is in `isa_mask`, else the last one (the portable kernel, always built).
template <typename T, int N>
const T* select_first(const T (&table)[N], uint32_t isa_mask) {
  for (const T& k : table)
    if (k.isa & isa_mask) return &k;
  return &table[N - 1];
}

// The entry named `name`, or null.
template <typename T, int N>
const T* find_kernel(const T (&table)[N], const char* name) {
  for (const T& k : table)
    if (std::strcmp(k.name, name) == 0) return &k;
  return nullptr;
}

}  // namespace slimnn
