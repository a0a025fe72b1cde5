// Per-call scratch buffers and small conversions shared by the threaded drivers (compiled without ISA flags).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

namespace slimnn {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// 64-byte aligned scratch of `count` elements, uninitialized (never a null pointer, even for count 0).
template <typename T>
inline std::unique_ptr<T[], FreeDeleter> scratch(int64_t count) {
  const size_t bytes = (static_cast<size_t>(count) * sizeof(T) + 63) & ~size_t{63};
  void* p = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
  if (p == nullptr) throw std::bad_alloc();
  return std::unique_ptr<T[], FreeDeleter>(static_cast<T*>(p));
}

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace slimnn
