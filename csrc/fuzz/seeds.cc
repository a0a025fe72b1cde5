// Writes the seed corpus for the fuzz targets: valid q8 blobs of shapes around the panel and group tails.
// Usage: fuzz_seeds <dir>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "formats/q8.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  struct Shape {
    int64_t n, k, gs;
  };
  const Shape shapes[] = {{1, 1, 0}, {16, 4, 0}, {17, 5, 0}, {3, 70, 32}, {33, 12, 4}, {8, 130, 64}, {20, 9, 8}};
  uint32_t state = 12345;
  auto next = [&] { return state = state * 1664525u + 1013904223u; };
  for (const Shape& s : shapes) {
    const int64_t ng = s.gs == 0 ? 1 : (s.k + s.gs - 1) / s.gs;
    std::vector<int8_t> q(static_cast<size_t>(s.n * s.k));
    for (auto& v : q) v = static_cast<int8_t>(static_cast<int>(next() >> 24) % 255 - 127);
    std::vector<float> scales(static_cast<size_t>(ng * s.n));
    for (auto& v : scales) v = 1e-3f + static_cast<float>(next() >> 8) * 1e-9f;
    std::vector<uint8_t> blob(slimnn::q8_blob_bytes(s.n, s.k, s.gs));
    slimnn::q8_pack(q.data(), scales.data(), s.n, s.k, s.gs, blob.data());
    const std::string path = std::string(argv[1]) + "/q8_" + std::to_string(s.n) + "x" + std::to_string(s.k) + "_g" +
                             std::to_string(s.gs) + ".bin";
    FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr || std::fwrite(blob.data(), 1, blob.size(), f) != blob.size() || std::fclose(f) != 0) {
      std::perror(path.c_str());
      return 1;
    }
  }
  return 0;
}
