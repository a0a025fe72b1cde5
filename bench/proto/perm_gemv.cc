// Prototype: sparse int8 GEMV (M = 1, 1 thread) with precomputed byte permutes (vpermi2b) over
// 128- / 256-column windows, vs the bitmap kernel's loop (vpcompressb, G = 1) and a dense int8 VNNI GEMV.
// Stand-alone evidence for docs/sparse.md ("tried: ..."), not part of the package build.
//   g++ -O3 -march=native -o /tmp/perm_gemv bench/proto/perm_gemv.cc && /tmp/perm_gemv
// Every kernel's int32 dots are checked for exact equality with a scalar reference before timing.
// Timing: interleaved repetitions (each rep runs every kernel once, rotating order), medians.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

using u8 = uint8_t;
using i8 = int8_t;

static int32_t hsum(__m512i v) {
  alignas(64) uint32_t t[16];
  _mm512_store_si512(t, v);
  uint32_t s = 0;
  for (int i = 0; i < 16; ++i) s += t[i];
  return int32_t(s);
}

struct Problem {
  int64_t n, k;
  std::vector<i8> w;  // dense [n][k]
  std::vector<u8> x;  // [k] padded
  int64_t nnz = 0;
};

// ---------------- dense int8 VNNI GEMV ----------------
static void dense_gemv(const i8* w, const u8* x, int64_t n, int64_t k, int32_t* out) {
  for (int64_t r = 0; r < n; ++r) {
    const i8* wr = w + r * k;
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 256 <= k; c += 256) {
      a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(x + c), _mm512_loadu_si512(wr + c));
      a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(x + c + 64), _mm512_loadu_si512(wr + c + 64));
      a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(x + c + 128), _mm512_loadu_si512(wr + c + 128));
      a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(x + c + 192), _mm512_loadu_si512(wr + c + 192));
    }
    for (; c < k; c += 64) a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(x + c), _mm512_loadu_si512(wr + c));
    out[r] = hsum(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  }
}

// ---------------- bitmap (G = 1), the loop of csrc/kernels/bitmap gemv_g1 ----------------
struct Bitmap {
  int64_t kc;
  std::vector<uint64_t> masks;
  std::vector<int64_t> ptr;
  std::vector<i8> values;
};
static Bitmap pack_bitmap(const Problem& p) {
  Bitmap b;
  b.kc = (p.k + 63) / 64;
  b.masks.assign(p.n * b.kc, 0);
  b.ptr.push_back(0);
  for (int64_t r = 0; r < p.n; ++r) {
    for (int64_t c = 0; c < b.kc; ++c)
      for (int j = 0; j < 64 && c * 64 + j < p.k; ++j) {
        i8 v = p.w[r * p.k + c * 64 + j];
        if (v) b.masks[r * b.kc + c] |= 1ull << j, b.values.push_back(v);
      }
    b.ptr.push_back(b.values.size());
  }
  b.values.resize(b.values.size() + 256, 0);
  return b;
}
static void bitmap_gemv(const Bitmap& b, const u8* xq, int64_t n, int32_t* dots) {
  const int64_t kc = b.kc;
  for (int64_t r = 0; r < n; ++r) {
    const uint64_t* mk = b.masks.data() + r * kc;
    const i8* p = b.values.data() + b.ptr[r];
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = 0;
    for (; c + 4 <= kc; c += 4) {
      const uint64_t m0 = mk[c], m1 = mk[c + 1], m2 = mk[c + 2], m3 = mk[c + 3];
      const u8* x = xq + c * 64;
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(x));
      const __m512i x1 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m1), _mm512_loadu_si512(x + 64));
      const __m512i x2 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m2), _mm512_loadu_si512(x + 128));
      const __m512i x3 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m3), _mm512_loadu_si512(x + 192));
      const i8* p1 = p + _mm_popcnt_u64(m0);
      const i8* p2 = p1 + _mm_popcnt_u64(m1);
      const i8* p3 = p2 + _mm_popcnt_u64(m2);
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      a1 = _mm512_dpbusd_epi32(a1, x1, _mm512_loadu_si512(p1));
      a2 = _mm512_dpbusd_epi32(a2, x2, _mm512_loadu_si512(p2));
      a3 = _mm512_dpbusd_epi32(a3, x3, _mm512_loadu_si512(p3));
      p = p3 + _mm_popcnt_u64(m3);
    }
    for (; c < kc; ++c) {
      const uint64_t m0 = mk[c];
      const __m512i x0 = _mm512_maskz_compress_epi8(_cvtu64_mask64(m0), _mm512_loadu_si512(xq + c * 64));
      a0 = _mm512_dpbusd_epi32(a0, x0, _mm512_loadu_si512(p));
      p += _mm_popcnt_u64(m0);
    }
    dots[r] = hsum(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  }
}

// ---------------- perm: rows in blocks of RB; per block, window (W = 128 or 256 columns), row: ---------
// an entry = count c (separate byte array) + c offsets (byte, < W) then c values, contiguous in one
// stream. A (row, window) with more than 64 nonzeros takes several entries (split: count bytes > 64 are
// consumed 64 at a time by the kernel loop).
struct Perm {
  int W, RB;
  int64_t nw, nb;
  std::vector<u8> counts;  // [nb][nw][RB]  (up to 255; entries > 64 consumed in pieces)
  std::vector<u8> stream;  // per entry: offsets[c], values[c]  (pieces of 64: off[64] val[64] ...)
};
static Perm pack_perm(const Problem& p, int W, int RB) {
  Perm q;
  q.W = W, q.RB = RB;
  q.nw = (p.k + W - 1) / W;
  q.nb = (p.n + RB - 1) / RB;
  q.counts.assign(q.nb * q.nw * RB, 0);
  for (int64_t b = 0; b < q.nb; ++b)
    for (int64_t w = 0; w < q.nw; ++w)
      for (int j = 0; j < RB; ++j) {
        const int64_t r = b * RB + j;
        if (r >= p.n) continue;
        std::vector<u8> off;
        std::vector<i8> val;
        for (int o = 0; o < W && w * W + o < p.k; ++o) {
          i8 v = p.w[r * p.k + w * W + o];
          if (v) off.push_back(u8(o)), val.push_back(v);
        }
        if (off.size() > 255) { fprintf(stderr, "count > 255\n"); exit(1); }
        q.counts[(b * q.nw + w) * RB + j] = u8(off.size());
        for (size_t s = 0; s < off.size(); s += 64) {
          size_t e = std::min(off.size(), s + 64);
          for (size_t i = s; i < e; ++i) q.stream.push_back(off[i]);
          for (size_t i = s; i < e; ++i) q.stream.push_back(u8(val[i]));
        }
      }
  q.stream.resize(q.stream.size() + 256, 0);
  return q;
}

template <int RB>
static void perm128_gemv(const Perm& q, const u8* xq, int64_t n, int32_t* dots) {
  const u8* s = q.stream.data();
  const u8* cnt = q.counts.data();
  for (int64_t b = 0; b < q.nb; ++b) {
    __m512i acc[RB];
    for (int j = 0; j < RB; ++j) acc[j] = _mm512_setzero_si512();
    for (int64_t w = 0; w < q.nw; ++w, cnt += RB) {
      const __m512i x0 = _mm512_loadu_si512(xq + w * 128), x1 = _mm512_loadu_si512(xq + w * 128 + 64);
#pragma GCC unroll 16
      for (int j = 0; j < RB; ++j) {
        unsigned c = cnt[j];
        while (__builtin_expect(c > 64, 0)) {
          const __m512i xs = _mm512_permutex2var_epi8(x0, _mm512_loadu_si512(s), x1);
          acc[j] = _mm512_dpbusd_epi32(acc[j], xs, _mm512_loadu_si512(s + 64));
          s += 128, c -= 64;
        }
        const __mmask64 k = _cvtu64_mask64(_bzhi_u64(~0ull, c));
        const __m512i xs = _mm512_maskz_permutex2var_epi8(k, x0, _mm512_loadu_si512(s), x1);
        acc[j] = _mm512_dpbusd_epi32(acc[j], xs, _mm512_loadu_si512(s + c));
        s += 2 * c;
      }
    }
    for (int j = 0; j < RB && b * RB + j < n; ++j) dots[b * RB + j] = hsum(acc[j]);
  }
}

template <int RB>
static void perm256_gemv(const Perm& q, const u8* xq, int64_t n, int32_t* dots) {
  const u8* s = q.stream.data();
  const u8* cnt = q.counts.data();
  for (int64_t b = 0; b < q.nb; ++b) {
    __m512i acc[RB];
    for (int j = 0; j < RB; ++j) acc[j] = _mm512_setzero_si512();
    for (int64_t w = 0; w < q.nw; ++w, cnt += RB) {
      const u8* xw = xq + w * 256;
      const __m512i x0 = _mm512_loadu_si512(xw), x1 = _mm512_loadu_si512(xw + 64);
      const __m512i x2 = _mm512_loadu_si512(xw + 128), x3 = _mm512_loadu_si512(xw + 192);
#pragma GCC unroll 16
      for (int j = 0; j < RB; ++j) {
        unsigned c = cnt[j];
        for (;;) {
          const unsigned cc = c < 64 ? c : 64;
          const __m512i idx = _mm512_loadu_si512(s);
          const __mmask64 k = _cvtu64_mask64(_bzhi_u64(~0ull, cc));
          const __mmask64 hi = _mm512_movepi8_mask(idx);
          const __m512i lo = _mm512_maskz_permutex2var_epi8(_kandn_mask64(hi, k), x0, idx, x1);
          const __m512i xs = _mm512_or_si512(lo, _mm512_maskz_permutex2var_epi8(_kand_mask64(hi, k), x2, idx, x3));
          acc[j] = _mm512_dpbusd_epi32(acc[j], xs, _mm512_loadu_si512(s + cc));
          s += 2 * cc;
          if (__builtin_expect(c <= 64, 1)) break;
          c -= 64;
        }
      }
    }
    for (int j = 0; j < RB && b * RB + j < n; ++j) dots[b * RB + j] = hsum(acc[j]);
  }
}

// ---------------- harness ----------------
static Problem make(int64_t n, int64_t k, double density, uint64_t seed) {
  Problem p;
  p.n = n, p.k = k;
  std::mt19937_64 g(seed);
  std::uniform_real_distribution<double> U(0, 1);
  std::uniform_int_distribution<int> V(1, 127), S(0, 1), X(0, 255);
  p.w.assign(n * k, 0);
  for (auto& v : p.w)
    if (U(g) < density) v = i8(S(g) ? V(g) : -V(g)), ++p.nnz;
  p.x.assign(k + 512, 0);
  for (int64_t i = 0; i < k; ++i) p.x[i] = u8(X(g));
  return p;
}

// ctypes entry points (bench/proto/compare_perm.py): kind 0 = bitmap loop, 1 = perm128 RB 8,
// 2 = perm256 RB 8. w: dense int8 [n][k]; x: u8 [k] (readable to k + 512 bytes).
struct Handle {
  int kind;
  int64_t n;
  Bitmap bm;
  Perm q;
};
extern "C" void* proto_create(const int8_t* w, int64_t n, int64_t k, int kind) {
  Problem p;
  p.n = n, p.k = k;
  p.w.assign(w, w + n * k);
  auto* h = new Handle;
  h->kind = kind, h->n = n;
  if (kind == 0) h->bm = pack_bitmap(p);
  else h->q = pack_perm(p, kind == 1 ? 128 : 256, 8);
  return h;
}
extern "C" int64_t proto_bytes(void* hp) {
  auto* h = static_cast<Handle*>(hp);
  return h->kind == 0 ? int64_t(h->bm.masks.size() * 8 + h->bm.values.size())
                      : int64_t(h->q.counts.size() + h->q.stream.size());
}
extern "C" void proto_run(void* hp, const uint8_t* x, int32_t* out) {
  auto* h = static_cast<Handle*>(hp);
  if (h->kind == 0) bitmap_gemv(h->bm, x, h->n, out);
  else if (h->kind == 1) perm128_gemv<8>(h->q, x, h->n, out);
  else perm256_gemv<8>(h->q, x, h->n, out);
}
extern "C" void proto_free(void* hp) { delete static_cast<Handle*>(hp); }

#ifndef PROTO_NO_MAIN
int main(int argc, char** argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 15;
  struct Shape { int64_t n, k; };
  const Shape shapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};
  for (auto sh : shapes)
    for (double dens : {0.10, 0.20}) {
      Problem p = make(sh.n, sh.k, dens, 1234 + sh.n + sh.k);
      std::vector<int32_t> ref(p.n), out(p.n);
      for (int64_t r = 0; r < p.n; ++r) {
        int64_t s = 0;
        for (int64_t c = 0; c < p.k; ++c) s += int64_t(p.x[c]) * p.w[r * p.k + c];
        ref[r] = int32_t(s);
      }
      Bitmap bm = pack_bitmap(p);
      Perm q128_1 = pack_perm(p, 128, 1), q128_4 = pack_perm(p, 128, 4), q128_8 = pack_perm(p, 128, 8);
      Perm q256_4 = pack_perm(p, 256, 4), q256_8 = pack_perm(p, 256, 8), q256_16 = pack_perm(p, 256, 16);
      std::vector<std::pair<std::string, std::function<void()>>> ks = {
          {"dense", [&] { dense_gemv(p.w.data(), p.x.data(), p.n, p.k, out.data()); }},
          {"bitmap", [&] { bitmap_gemv(bm, p.x.data(), p.n, out.data()); }},
          {"perm128_rb1", [&] { perm128_gemv<1>(q128_1, p.x.data(), p.n, out.data()); }},
          {"perm128_rb4", [&] { perm128_gemv<4>(q128_4, p.x.data(), p.n, out.data()); }},
          {"perm128_rb8", [&] { perm128_gemv<8>(q128_8, p.x.data(), p.n, out.data()); }},
          {"perm256_rb4", [&] { perm256_gemv<4>(q256_4, p.x.data(), p.n, out.data()); }},
          {"perm256_rb8", [&] { perm256_gemv<8>(q256_8, p.x.data(), p.n, out.data()); }},
          {"perm256_rb16", [&] { perm256_gemv<16>(q256_16, p.x.data(), p.n, out.data()); }},
      };
      std::vector<size_t> bytes = {p.w.size(), bm.masks.size() * 8 + bm.values.size(), q128_1.counts.size() + q128_1.stream.size(),
                                   q128_4.counts.size() + q128_4.stream.size(), q128_8.counts.size() + q128_8.stream.size(),
                                   q256_4.counts.size() + q256_4.stream.size(), q256_8.counts.size() + q256_8.stream.size(),
                                   q256_16.counts.size() + q256_16.stream.size()};
      for (auto& kv : ks) {
        std::fill(out.begin(), out.end(), 0x7eadbeef);
        kv.second();
        if (out != ref) { printf("MISMATCH %s\n", kv.first.c_str()); return 1; }
      }
      std::vector<std::vector<double>> t(ks.size());
      for (int r = 0; r < reps; ++r)
        for (size_t i = 0; i < ks.size(); ++i) {
          size_t j = (i + r) % ks.size();
          auto t0 = std::chrono::steady_clock::now();
          ks[j].second();
          auto t1 = std::chrono::steady_clock::now();
          t[j].push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
        }
      printf("%lld x %lld (N x K), density %.2f, nnz %lld\n", (long long)p.n, (long long)p.k, dens, (long long)p.nnz);
      double med_dense = 0, med_bm = 0;
      for (size_t i = 0; i < ks.size(); ++i) {
        std::sort(t[i].begin(), t[i].end());
        double med = t[i][t[i].size() / 2];
        if (i == 0) med_dense = med;
        if (i == 1) med_bm = med;
        printf("  %-12s med %8.1f us  min %8.1f us  nnz/ns %5.2f  vs dense %5.2fx  vs bitmap %5.2fx  bytes/dense-w %.3f\n",
               ks[i].first.c_str(), med, t[i][0], p.nnz / (med * 1e3), med_dense / med, med_bm / med,
               double(bytes[i]) / p.w.size());
      }
      fflush(stdout);
    }
  return 0;
}
#endif
