// Native kernel test driver (no Python): every qgemm / q4gemm kernel of this build against the portable
// reference on the adversarial shape list, each ISA level forced in turn through force_isa(). Built for the
// host (x86-64 or aarch64, ctest) and cross-compiled for aarch64 to run under qemu (scripts/arm_check.sh).
//
//   test_kernels                      all checks
//   test_kernels --write-blobs FILE   also writes packed blobs, inputs and portable outputs to FILE
//   test_kernels --read-blobs FILE    also loads FILE (written by another build, e.g. x86-64) and checks
//                                     that the portable path gives the same bits and every ISA agrees
//   test_kernels --only-blobs ...     the blob files only (no kernel tests, no coverage check)
//
// What is checked (STYLE.md 6): integer results (the dot hooks, the quantized activations) exactly against
// the portable kernels; float outputs within MAX_FACTOR * eps * sqrt(K) * magnitude (tests/tolerances.py:
// magnitude = the sum of |terms| the kernel adds); every kernel whose ISA the CPU has is exercised at least
// once (ruy's covered paths), and one the CPU lacks is reported as skipped, never as passed. Exit status 0
// when every check passed.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/isa.h"
#include "formats/q4.h"
#include "formats/q8.h"
#include "kernels/q4gemm/q4gemm.h"
#include "kernels/qgemm/qgemm.h"
#include "kernels/wogemm/wogemm.h"
#include "driver.h"

namespace slimnn {
namespace {
using namespace native_test;

std::string shape_str(const char* fam, int64_t m, int64_t n, int64_t k, int64_t gs) {
  char b[160];
  std::snprintf(b, sizeof b, "%s M=%lld N=%lld K=%lld group=%lld", fam, (long long)m, (long long)n, (long long)k,
                (long long)gs);
  return b;
}

// ---------------------------------------------------------------------------------------------------- q8

// The activation quantization step of a row, (max - min) / 255 (plain loop: gcc 12 for aarch64 crashes
// vectorizing an fmin/fmax reduction here).
double quant_step(const float* x, int64_t k) {
  float mn = 0.0f, mx = 0.0f;
  for (int64_t j = 0; j < k; ++j) {
    if (x[j] < mn) mn = x[j];
    if (x[j] > mx) mx = x[j];
  }
  return (double(mx) - double(mn)) / 255.0;
}

struct Q8Case {
  int64_t n, k, gs;
  AlignedBytes blob;
  Q8View view;
  std::vector<int8_t> q;
  std::vector<float> scales, bias;
  Q8Case(int64_t n_, int64_t k_, int64_t gs_, uint64_t seed)
      : n(n_), k(k_), gs(gs_), blob(size_t(q8_blob_bytes(n_, k_, gs_))) {
    Rng r(seed);
    const int64_t ng = gs == 0 ? 1 : (k + gs - 1) / gs;
    q.resize(n * k);
    for (auto& v : q) v = int8_t(r.range(-128, 127));  // -128 included: the widest products
    scales.resize(ng * n);
    for (auto& s : scales) s = r.uniform(0.001f, 0.05f);
    bias.resize(n);
    for (auto& b : bias) b = r.uniform(-1.0f, 1.0f);
    q8_pack(q.data(), scales.data(), n, k, gs, blob.p);
    view = q8_view(blob.p, blob.size, true);
  }
  // sum_k |x| |w_deq| + |bias| per output element; `spread` adds the activation quantization step (dyn).
  std::vector<double> magnitude(const std::vector<float>& x, int64_t m, bool dyn) const {
    std::vector<double> mag(m * n);
    for (int64_t i = 0; i < m; ++i) {
      const double step = dyn ? quant_step(x.data() + i * k, k) : 0.0;
      for (int64_t c = 0; c < n; ++c) {
        double s = std::fabs(bias[c]);
        for (int64_t j = 0; j < k; ++j) {
          const int64_t g = gs == 0 ? 0 : j / gs;
          s += (std::fabs(x[i * k + j]) + step) * std::fabs(double(q[c * k + j]) * scales[g * n + c]);
        }
        mag[i * n + c] = s;
      }
    }
    return mag;
  }
};

std::vector<float> random_x(int64_t m, int64_t k, uint64_t seed) {
  Rng r(seed);
  std::vector<float> x(m * k);
  for (auto& v : x) v = r.uniform(-2.0f, 3.0f);
  if (m > 1 && k > 0) x[k] = 0.0f;  // a row with an exact zero and one of all zeros: zero-point edge cases
  if (m > 2)
    for (int64_t j = 0; j < k; ++j) x[2 * k + j] = 0.0f;
  return x;
}

std::vector<float> run_q8(KernelKind kind, const Q8Case& c, const std::vector<float>& x, int64_t m,
                          const float* bias, uint32_t mask, const KernelInfo** used) {
  std::vector<float> y(m * c.n, -12345.0f);  // sentinel: every element must be written
  const KernelInfo* ki = q8_linear(kind, x.data(), false, m, c.k, c.view, bias, y.data(), c.n, 2, mask);
  if (used) *used = ki;
  if (m > 0) g_used.insert(ki->name);
  return y;
}

// m rows of x (k floats each) quantized by kernel ki's quantizer: kp bytes per row, scale and zero point.
struct QRows {
  std::vector<uint8_t> a;
  std::vector<float> sc;
  std::vector<int32_t> zp;
};
template <typename Info>
QRows quantize_rows(const Info* ki, const std::vector<float>& x, int64_t m, int64_t k, int64_t kp) {
  QRows r{std::vector<uint8_t>(m * kp, 0xAB), std::vector<float>(m), std::vector<int32_t>(m)};
  for (int64_t i = 0; i < m; ++i) ki->quantize(x.data() + i * k, k, kp, &r.a[i * kp], &r.sc[i], &r.zp[i]);
  return r;
}

// Calls f(m, x, kind, bias) for every row count of ms (x: random_x(m, k, seed_mul * m + idx)), both kinds
// (dyn first) and both biases (none, then `bias`).
template <typename Kind, size_t NM, typename F>
void for_ops(const int64_t (&ms)[NM], int64_t k, uint64_t seed_mul, int idx, Kind dyn, Kind wo, const float* bias,
             F f) {
  for (int64_t m : ms) {
    const std::vector<float> x = random_x(m, k, seed_mul * m + idx);
    for (Kind kind : {dyn, wo})
      for (const float* b : {static_cast<const float*>(nullptr), bias}) f(m, x, kind, b);
  }
}

void test_q8() {
  struct Shape { int64_t n, k, gs; };
  const Shape shapes[] = {{1, 1, 0},   {16, 4, 0},    {17, 5, 0},    {33, 75, 0},  {5, 300, 0},   {64, 1028, 0},
                          {40, 100, 8}, {23, 36, 12}, {48, 130, 4}, {31, 64, 32}, {19, 257, 20}, {130, 96, 0}};
  const int64_t ms[] = {0, 1, 2, 3, 4, 5, 8, 17};
  int idx = 0;
  for (const Shape& s : shapes) {
    Q8Case c(s.n, s.k, s.gs, 1000 + idx++);
    // Dot hooks and quantizers of every dyn kernel whose ISA is here, against the portable ones: exact.
    int count = 0;
    const KernelInfo* table = kernel_table(&count);
    const KernelInfo* ref_k = select_kernel(KernelKind::kQ8Dyn, 2, kIsaPortable);
    for (int64_t m : {int64_t(1), int64_t(3), int64_t(5)}) {
      const std::vector<float> x = random_x(m, c.k, 77 + m);
      const QRows qr = quantize_rows(ref_k, x, m, c.k, c.view.kp);
      const std::vector<uint8_t>& a_ref = qr.a;
      std::vector<int32_t> d_ref(m * c.view.np);
      q8_dot_i32(ref_k, a_ref.data(), m, c.view.kp, c.view, d_ref.data());
      for (int t = 0; t < count; ++t) {
        const KernelInfo& ki = table[t];
        if (ki.kind != KernelKind::kQ8Dyn || (ki.isa & detected_isa_mask()) == 0) continue;
        const QRows q = quantize_rows(&ki, x, m, c.k, c.view.kp);
        const std::string what = std::string(ki.name) + " " + shape_str("q8", m, c.n, c.k, c.gs);
        check_exact(q.a, a_ref, what + ": quantized activations");
        check_exact(q.sc, qr.sc, what + ": activation scales");
        check_exact(q.zp, qr.zp, what + ": activation zero points");
        std::vector<int32_t> d(m * c.view.np, 0x5A5A5A5A);
        q8_dot_i32(&ki, a_ref.data(), m, c.view.kp, c.view, d.data());
        check_exact(d, d_ref, what + ": int32 dot products");
      }
    }
    // The ops, each ISA level forced in turn, against the portable op.
    for_ops(ms, c.k, 5, idx, KernelKind::kQ8Dyn, KernelKind::kQ8Wo, c.bias.data(),
            [&](int64_t m, const std::vector<float>& x, KernelKind kind, const float* bias) {
              const bool dyn = kind == KernelKind::kQ8Dyn;
              const std::vector<float> ref = run_q8(kind, c, x, m, bias, kIsaPortable, nullptr);
              std::vector<double> mag = c.magnitude(x, m, dyn);
              if (!bias)
                for (int64_t i = 0; i < m; ++i)
                  for (int64_t j = 0; j < c.n; ++j) mag[i * c.n + j] -= std::fabs(c.bias[j]);
              // Weight-only runs twice from 2 rows on: below and above the panel path's crossover
              // (kernels/wogemm, forced from 2 rows), both against the same portable (non-panel) op.
              for (int panel : {0, 1}) {
                if (panel && (dyn || m < 2)) continue;
                set_wo_panel_min_rows(panel ? 2 : 0);
                check_forced<KernelInfo>(ref, mag, c.k,
                                         (dyn ? " dyn " : " wo ") + std::string(bias ? "bias " : "") +
                                             shape_str("q8", m, c.n, c.k, c.gs),
                                         [&](uint32_t mask, const KernelInfo** used) {
                                           return run_q8(kind, c, x, m, bias, mask, used);
                                         });
                set_wo_panel_min_rows(0);
              }
            });
  }
}

// ---------------------------------------------------------------------------------------------------- q4

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return uint16_t((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
}

uint16_t f32_to_f16(float f) {  // normal, positive values of modest range only (our scales)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const int32_t e = int32_t((u >> 23) & 0xFF) - 127 + 15;
  const uint32_t mant = (u >> 13) & 0x3FF;
  return uint16_t((u >> 16 & 0x8000) | (uint32_t(e) << 10) | mant);
}

struct Q4Case {
  int64_t n, k, gs;
  ScaleDtype dt;
  bool asym;
  AlignedBytes blob;
  Q4View view;
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales_f32, bias;
  Q4Case(int64_t n_, int64_t k_, int64_t gs_, ScaleDtype dt_, bool asym_, uint64_t seed)
      : n(n_), k(k_), gs(gs_), dt(dt_), asym(asym_), blob(size_t(q4_blob_bytes(n_, k_, gs_, dt_, asym_))) {
    Rng r(seed);
    const int64_t ng = gs == 0 ? 1 : (k + gs - 1) / gs;
    codes.resize(n * k);
    for (auto& v : codes) v = uint8_t(r.range(0, 15));
    if (asym) {
      zeros.resize(ng * n);
      for (auto& z : zeros) z = uint8_t(r.range(0, 15));
    }
    scales_f32.resize(ng * n);
    std::vector<uint16_t> s16(ng * n);
    for (size_t i = 0; i < scales_f32.size(); ++i) {
      const float s = r.uniform(0.001f, 0.05f);
      s16[i] = dt == ScaleDtype::kBF16 ? f32_to_bf16(s) : f32_to_f16(s);
      scales_f32[i] = dt == ScaleDtype::kF32 ? s : q4_scale_to_f32(s16.data(), dt, int64_t(i));
    }
    bias.resize(n);
    for (auto& b : bias) b = r.uniform(-1.0f, 1.0f);
    const void* sp = dt == ScaleDtype::kF32 ? static_cast<const void*>(scales_f32.data()) : s16.data();
    q4_pack(codes.data(), sp, asym ? zeros.data() : nullptr, nullptr, n, k, gs, dt, blob.p);
    view = q4_view(blob.p, blob.size, true);
  }
  std::vector<double> magnitude(const std::vector<float>& x, int64_t m, bool dyn, bool with_bias) const {
    std::vector<double> mag(m * n);
    for (int64_t i = 0; i < m; ++i) {
      const double step = dyn ? quant_step(x.data() + i * k, k) : 0.0;
      for (int64_t c = 0; c < n; ++c) {
        double s = with_bias ? std::fabs(bias[c]) : 0.0;
        for (int64_t j = 0; j < k; ++j) {
          const int64_t g = gs == 0 ? 0 : j / gs;
          const int z = asym ? zeros[g * n + c] : 8;
          s += (std::fabs(x[i * k + j]) + step) * std::fabs(double(codes[c * k + j] - z) * scales_f32[g * n + c]);
        }
        mag[i * n + c] = s;
      }
    }
    return mag;
  }
};

std::vector<float> run_q4(Q4KernelKind kind, const Q4Case& c, const std::vector<float>& x, int64_t m,
                          const float* bias, uint32_t mask, const Q4KernelInfo** used) {
  std::vector<float> y(m * c.n, -12345.0f);
  const Q4KernelInfo* ki =
      q4_linear(kind, x.data(), false, m, c.k, nullptr, c.view, bias, y.data(), c.n, 2, mask);
  if (used) *used = ki;
  if (m > 0) g_used.insert(ki->name);
  return y;
}

void test_q4() {
  struct Shape { int64_t n, k, gs; ScaleDtype dt; bool asym; };
  const Shape shapes[] = {{1, 1, 0, ScaleDtype::kF32, false},    {17, 9, 0, ScaleDtype::kF16, true},
                          {33, 100, 32, ScaleDtype::kF32, true}, {20, 70, 64, ScaleDtype::kBF16, false},
                          {48, 256, 32, ScaleDtype::kF16, false}, {5, 24, 0, ScaleDtype::kBF16, true},
                          {64, 520, 0, ScaleDtype::kF32, false},  {16, 96, 32, ScaleDtype::kBF16, true}};
  const int64_t ms[] = {0, 1, 2, 3, 4, 5, 8, 17};
  int idx = 0;
  for (const Shape& s : shapes) {
    Q4Case c(s.n, s.k, s.gs, s.dt, s.asym, 2000 + idx++);
    const int64_t kp = c.view.kp, ng = c.view.n_groups;
    int count = 0;
    const Q4KernelInfo* table = q4_kernel_table(&count);
    const Q4KernelInfo* ref_k = q4_select_kernel(Q4KernelKind::kQ4Dyn, 2, kIsaPortable);
    for (int64_t m : {int64_t(1), int64_t(3), int64_t(5)}) {
      const std::vector<float> x = random_x(m, c.k, 99 + m);
      const std::vector<uint8_t> a = quantize_rows(ref_k, x, m, c.k, kp).a;
      std::vector<int32_t> d_ref(m * ng * c.view.np);
      q4_dot_i32(ref_k, a.data(), m, kp, c.view, d_ref.data());
      for (int t = 0; t < count; ++t) {
        const Q4KernelInfo& ki = table[t];
        if (ki.kind != Q4KernelKind::kQ4Dyn || (ki.isa & detected_isa_mask()) == 0) continue;
        std::vector<int32_t> d(d_ref.size(), 0x5A5A5A5A);
        q4_dot_i32(&ki, a.data(), m, kp, c.view, d.data());
        check_exact(d, d_ref, std::string(ki.name) + " " + shape_str("q4", m, c.n, c.k, c.gs) + ": int32 E_g");
      }
    }
    for_ops(ms, c.k, 7, idx, Q4KernelKind::kQ4Dyn, Q4KernelKind::kQ4Wo, c.bias.data(),
            [&](int64_t m, const std::vector<float>& x, Q4KernelKind kind, const float* bias) {
              const bool dyn = kind == Q4KernelKind::kQ4Dyn;
              const std::vector<float> ref = run_q4(kind, c, x, m, bias, kIsaPortable, nullptr);
              const std::vector<double> mag = c.magnitude(x, m, dyn, bias != nullptr);
              check_forced<Q4KernelInfo>(ref, mag, c.k,
                                         (dyn ? " dyn " : " wo ") + std::string(bias ? "bias " : "") +
                                             shape_str("q4", m, c.n, c.k, c.gs),
                                         [&](uint32_t mask, const Q4KernelInfo** used) {
                                           return run_q4(kind, c, x, m, bias, mask, used);
                                         });
            });
  }
}

// --------------------------------------------------------------------------------- ISA words and forcing

void test_isa() {
  ++g_checks;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_from_name(isa_name(1u << i)) != (1u << i)) fail(std::string("isa word round trip: ") + isa_name(1u << i));
  if (isa_from_name("nope") != 0) fail("unknown ISA word accepted");
  const uint32_t best = best_isa(current_isa_mask());
  force_isa(kIsaPortable);
  if (current_isa_mask() != kIsaPortable) fail("forcing portable leaves more than portable");
  force_isa(0);
  if (best_isa(current_isa_mask()) != best) fail("lifting the force does not restore the best ISA");
#if defined(__aarch64__)
  if ((detected_isa_mask() & kIsaNeon) == 0) fail("aarch64 without Advanced SIMD detected");
#endif
}

// ------------------------------------------------------------------- blobs across builds (x86 -> aarch64)
//
// File: "SLNNBLB1", then records: u32 name length, name, u64 size, bytes. Read back field by field with
// bounds checks (no code, no pointers in the file).

void put(std::string& out, const std::string& name, const void* p, uint64_t n) {
  const uint32_t l = uint32_t(name.size());
  out.append(reinterpret_cast<const char*>(&l), 4);
  out += name;
  out.append(reinterpret_cast<const char*>(&n), 8);
  out.append(static_cast<const char*>(p), size_t(n));
}

std::map<std::string, std::string> read_records(const std::string& path) {
  std::map<std::string, std::string> r;
  std::ifstream f(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (s.size() < 8 || s.compare(0, 8, "SLNNBLB1") != 0) {
    fail("blob file " + path + " missing or not a SLNNBLB1 file");
    return r;
  }
  size_t o = 8;
  while (o < s.size()) {
    uint32_t l;
    uint64_t n;
    if (s.size() - o < 4) break;
    std::memcpy(&l, s.data() + o, 4);
    o += 4;
    if (s.size() - o < uint64_t(l) + 8) break;
    std::string name = s.substr(o, l);
    o += l;
    std::memcpy(&n, s.data() + o, 8);
    o += 8;
    if (s.size() - o < n) break;
    r[name] = s.substr(o, size_t(n));
    o += size_t(n);
  }
  if (o != s.size()) fail("blob file " + path + " truncated");
  return r;
}

template <typename T>
std::vector<T> as_vec(const std::string& s) {
  std::vector<T> v(s.size() / sizeof(T));
  std::memcpy(v.data(), s.data(), v.size() * sizeof(T));
  return v;
}

struct BlobSet {
  Q8Case q8{37, 75, 0, 31};
  Q8Case q8g{21, 100, 20, 32};
  Q4Case q4{37, 100, 32, ScaleDtype::kF16, true, 33};
  int64_t m = 5;
};

void write_blobs(const std::string& path) {
  BlobSet b;
  std::string out = "SLNNBLB1";
  for (auto* c : {&b.q8, &b.q8g}) {
    const std::string tag = c == &b.q8 ? "q8" : "q8g";
    const std::vector<float> x = random_x(b.m, c->k, 41);
    put(out, tag + ".blob", c->blob.p, c->blob.size);
    put(out, tag + ".x", x.data(), x.size() * 4);
    put(out, tag + ".bias", c->bias.data(), c->bias.size() * 4);
    for (KernelKind kind : {KernelKind::kQ8Dyn, KernelKind::kQ8Wo}) {
      const std::vector<float> y = run_q8(kind, *c, x, b.m, c->bias.data(), kIsaPortable, nullptr);
      put(out, tag + (kind == KernelKind::kQ8Dyn ? ".y_dyn" : ".y_wo"), y.data(), y.size() * 4);
    }
  }
  const std::vector<float> x = random_x(b.m, b.q4.k, 43);
  put(out, "q4.blob", b.q4.blob.p, b.q4.blob.size);
  put(out, "q4.x", x.data(), x.size() * 4);
  put(out, "q4.bias", b.q4.bias.data(), b.q4.bias.size() * 4);
  for (Q4KernelKind kind : {Q4KernelKind::kQ4Dyn, Q4KernelKind::kQ4Wo}) {
    const std::vector<float> y = run_q4(kind, b.q4, x, b.m, b.q4.bias.data(), kIsaPortable, nullptr);
    put(out, kind == Q4KernelKind::kQ4Dyn ? "q4.y_dyn" : "q4.y_wo", y.data(), y.size() * 4);
  }
  std::ofstream f(path, std::ios::binary);
  f.write(out.data(), std::streamsize(out.size()));
  if (!f) fail("cannot write " + path);
}

// Loads blobs another build wrote: the blob bytes equal this build's packing of the same canonical weights,
// the portable outputs are bit-identical, and every ISA level agrees within the tolerance.
// A blob record written by another build: the same bytes as this build's packing (mine), copied into the
// aligned `bytes` and fully validated by view(p, size, true) into *v; false (one failure) when refused.
template <typename View, typename ViewFn>
bool load_blob(const std::string& blob, const AlignedBytes& mine, const std::string& what, AlignedBytes* bytes, View* v,
               ViewFn view) {
  check_exact(std::vector<uint8_t>(blob.begin(), blob.end()), std::vector<uint8_t>(mine.p, mine.p + mine.size),
              what + " blob bytes vs this build's packing");
  std::memcpy(bytes->p, blob.data(), blob.size());
  try {
    *v = view(bytes->p, bytes->size, true);
  } catch (const std::exception& e) {
    fail(what + " blob refused: " + e.what());
    return false;
  }
  return true;
}

void read_blobs(const std::string& path) {
  std::map<std::string, std::string> r = read_records(path);
  if (r.empty()) return;
  BlobSet b;
  for (auto* c : {&b.q8, &b.q8g}) {
    const std::string tag = c == &b.q8 ? "q8" : "q8g";
    const std::string& blob = r[tag + ".blob"];
    AlignedBytes bytes(blob.size());
    Q8View v;
    if (!load_blob(blob, c->blob, path + ": " + tag, &bytes, &v, q8_view)) continue;
    const std::vector<float> x = as_vec<float>(r[tag + ".x"]), bias = as_vec<float>(r[tag + ".bias"]);
    for (KernelKind kind : {KernelKind::kQ8Dyn, KernelKind::kQ8Wo}) {
      const bool dyn = kind == KernelKind::kQ8Dyn;
      const std::vector<float> want = as_vec<float>(r[tag + (dyn ? ".y_dyn" : ".y_wo")]);
      const std::vector<double> mag = c->magnitude(x, b.m, dyn);
      for (uint32_t level : levels()) {
        force_isa(level);
        std::vector<float> y(b.m * v.n, -1.0f);
        const KernelInfo* ki = q8_linear(kind, x.data(), false, b.m, v.k, v, bias.data(), y.data(), v.n, 2, current_isa_mask());
        force_isa(0);
        const std::string what = path + ": " + tag + (dyn ? " dyn " : " wo ") + ki->name;
        if (level == kIsaPortable)
          check_exact(y, want, what + " (portable, bit-identical to the writer's)");
        else
          check_close(y, want, mag, v.k, what);
      }
    }
  }
  const std::string& blob = r["q4.blob"];
  AlignedBytes bytes(blob.size());
  Q4View v;
  if (!load_blob(blob, b.q4.blob, path + ": q4", &bytes, &v, q4_view)) return;
  const std::vector<float> x = as_vec<float>(r["q4.x"]), bias = as_vec<float>(r["q4.bias"]);
  for (Q4KernelKind kind : {Q4KernelKind::kQ4Dyn, Q4KernelKind::kQ4Wo}) {
    const bool dyn = kind == Q4KernelKind::kQ4Dyn;
    const std::vector<float> want = as_vec<float>(r[dyn ? "q4.y_dyn" : "q4.y_wo"]);
    const std::vector<double> mag = b.q4.magnitude(x, b.m, dyn, true);
    for (uint32_t level : levels()) {
      force_isa(level);
      std::vector<float> y(b.m * v.n, -1.0f);
      const Q4KernelInfo* ki =
          q4_linear(kind, x.data(), false, b.m, v.k, nullptr, v, bias.data(), y.data(), v.n, 2, current_isa_mask());
      force_isa(0);
      const std::string what = path + std::string(": q4") + (dyn ? " dyn " : " wo ") + ki->name;
      if (level == kIsaPortable)
        check_exact(y, want, what + " (portable, bit-identical to the writer's)");
      else
        check_close(y, want, mag, v.k, what);
    }
  }
}

// Every kernel whose ISA this CPU has must have been chosen by some call above; others are listed as skipped.
void check_coverage() {
  int n8 = 0, n4 = 0;
  const KernelInfo* t8 = kernel_table(&n8);
  const Q4KernelInfo* t4 = q4_kernel_table(&n4);
  std::vector<std::pair<std::string, uint32_t>> all;
  for (int i = 0; i < n8; ++i) all.push_back({t8[i].name, t8[i].isa});
  for (int i = 0; i < n4; ++i) all.push_back({t4[i].name, t4[i].isa});
  family_kernels(&all);
  for (const auto& k : all) {
    if ((k.second & detected_isa_mask()) == 0) {
      std::printf("skipped (CPU lacks %s): %s\n", isa_name(k.second), k.first.c_str());
      continue;
    }
    ++g_checks;
    if (!g_used.count(k.first)) fail("kernel never exercised: " + k.first);
  }
}

}  // namespace
}  // namespace slimnn

int main(int argc, char** argv) {
  using namespace slimnn;
  std::string write_path, read_path;
  bool only_blobs = false;  // skip the kernel tests: only write / read the blob files
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--write-blobs" && i + 1 < argc) {
      write_path = argv[++i];
    } else if (a == "--read-blobs" && i + 1 < argc) {
      read_path = argv[++i];
    } else if (a == "--only-blobs") {
      only_blobs = true;
    } else {
      std::fprintf(stderr, "usage: %s [--write-blobs FILE] [--read-blobs FILE] [--only-blobs]\n", argv[0]);
      return 2;
    }
  }
  std::printf("ISAs detected:");
  for (int i = 0; i < kNumIsas; ++i)
    if (detected_isa_mask() & (1u << i)) std::printf(" %s", isa_name(1u << i));
  std::printf("; built:");
  for (int i = 0; i < kNumIsas; ++i)
    if (built_isa_mask() & (1u << i)) std::printf(" %s", isa_name(1u << i));
  const CpuIdInfo info = cpu_id_info();
  std::printf("; cpu features: %s\n", info.features.empty() ? "(x86: see ISAs)" : info.features.c_str());
  if (!only_blobs) {
    test_isa();
    test_q8();
    test_q4();
    native_test::test_families();
  }
  if (!write_path.empty()) write_blobs(write_path);
  if (!read_path.empty()) read_blobs(read_path);
  if (!only_blobs) check_coverage();
  std::printf("%d checks, %d failures\n", native_test::g_checks, native_test::g_failures);
  return native_test::g_failures == 0 ? 0 : 1;
}
