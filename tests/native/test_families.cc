// Native driver, part two: the fp32 families (act, lowrank, attention, depthwise conv and its quantizer,
// spmm) with every kernel of this build whose ISA the CPU has, against the portable kernels on adversarial
// shapes (empty, one, odd sizes, tails of every vector width, block and N:M tails). act and the conv
// quantizer promise the portable bits (checked exactly, NaN matching NaN); the sums are checked within
// MAX_FACTOR * eps * sqrt(K) * magnitude (attention: the per-row bound of tests/test_attention.py, twice,
// since both outputs carry it). Every call that writes an output also checks that nothing past it was
// touched (sentinels).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "driver.h"
#include "formats/sparse.h"
#include "kernels/act/act.h"
#include "kernels/attention/attention.h"
#include "kernels/conv/conv.h"
#include "kernels/lowrank/lowrank.h"
#include "kernels/spmm/spmm.h"

namespace slimnn {
namespace native_test {
namespace {

constexpr float kSentinel = -12345.0f;
bool have(uint32_t isa) { return (isa & detected_isa_mask() & built_isa_mask()) != 0; }

bool same_bits_or_nan(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, 4) == 0;
}

void check_same(const std::vector<float>& y, const std::vector<float>& ref, const std::string& what) {
  ++g_checks;
  for (size_t i = 0; i < y.size(); ++i)
    if (!same_bits_or_nan(y[i], ref[i])) {
      char b[160];
      std::snprintf(b, sizeof b, " at %zu: %.9g vs portable %.9g", i, y[i], ref[i]);
      fail(what + b);
      return;
    }
}

void check_tail(const std::vector<float>& y, size_t from, const std::string& what) {
  for (size_t i = from; i < y.size(); ++i)
    if (!same_bits_or_nan(y[i], kSentinel)) return fail(what + ": wrote past its output");
}

// ----------------------------------------------------------------------------------------------------- act

std::vector<float> act_inputs(int64_t n, uint64_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  const float special[] = {0.0f,   -0.0f, std::nanf(""), inf,    -inf,    1e-30f, -1e-30f, 88.0f, -88.0f, 100.0f,
                           -100.0f, 3.4e38f, -3.4e38f,   1e-40f, -9.5f,   -5.5f,  6.0f,    -3.0f, 0.5f,   -0.5f};
  Rng r(seed);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) x[i] = i % 5 == 3 ? special[r.range(0, 19)] : r.uniform(-12.0f, 12.0f);
  return x;
}

void test_act() {
  int count = 0;
  const ActInfo* t = act_table(&count);
  const ActInfo* ref = act_kernel_by_name("act_f32__portable");
  for (int64_t n : {0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 100, 1000}) {
    const std::vector<float> x = act_inputs(n, 300 + n);
    for (int act = 1; act < kNumActivations; ++act) {
      std::vector<float> yr(x);
      yr.resize(n + 5, kSentinel);
      ref->fn(act, yr.data(), n);
      for (int i = 0; i < count; ++i) {
        if (!have(t[i].isa)) continue;
        g_used.insert(t[i].name);
        std::vector<float> y(x);
        y.resize(n + 5, kSentinel);
        t[i].fn(act, y.data(), n);
        const std::string what = std::string(t[i].name) + " act " + std::to_string(act) + " n=" + std::to_string(n);
        check_same(y, yr, what);
        check_tail(y, n, what);
      }
    }
  }
  for (uint32_t level : levels()) {
    ++g_checks;
    if (select_act(level | kIsaPortable)->isa > level) fail(std::string("act: kernel above forced ") + isa_name(level));
  }
}

// ------------------------------------------------------------------------------------------------- lowrank

void test_lowrank() {
  int count = 0;
  const LrKernelInfo* t = lowrank_kernel_table(&count);
  const LrKernelInfo* ref = lowrank_kernel_by_name("lowrank_f32_1x4__portable");
  Rng r(41);
  for (int64_t k : {0, 1, 3, 4, 5, 7, 8, 9, 17, 64, 75, 300}) {
    const int64_t ldx = k + 3, ldw = k + 1;
    std::vector<float> x(8 * ldx), w(8 * ldw), bias(8);
    for (auto& v : x) v = r.uniform(-2.0f, 3.0f);
    for (auto& v : w) v = r.uniform(-1.0f, 1.0f);
    for (auto& v : bias) v = r.uniform(-1.0f, 1.0f);
    for (int i = 0; i < count; ++i) {
      if (!have(t[i].isa) || t[i].isa == kIsaPortable) continue;
      g_used.insert(t[i].name);
      for (int mr = 1; mr <= t[i].mr; ++mr)
        for (int nr = 1; nr <= t[i].nr; ++nr)
          for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
            const int64_t ldy = nr + 2;
            std::vector<float> y(mr * ldy + 3, kSentinel), yr(y);
            t[i].fn(mr, nr, k, x.data(), ldx, w.data(), ldw, b, y.data(), ldy);
            std::vector<double> mag(y.size(), 0.0);
            for (int a = 0; a < mr; ++a)
              for (int j0 = 0; j0 < nr; j0 += 4) {
                const int nn = std::min(4, nr - j0);
                ref->fn(1, nn, k, x.data() + a * ldx, ldx, w.data() + j0 * ldw, ldw, b ? b + j0 : nullptr,
                        yr.data() + a * ldy + j0, ldy);
                for (int j = j0; j < j0 + nn; ++j) {
                  double s = b ? std::fabs(b[j]) : 0.0;
                  for (int64_t c = 0; c < k; ++c) s += std::fabs(double(x[a * ldx + c]) * w[j * ldw + c]);
                  mag[a * ldy + j] = s;
                }
              }
            char what[160];
            std::snprintf(what, sizeof what, "%s mr=%d nr=%d K=%lld%s", t[i].name, mr, nr, (long long)k,
                          b ? " bias" : "");
            check_close(y, yr, mag, k, what);  // sentinel cells must match the reference's untouched ones
          }
    }
  }
}

// ----------------------------------------------------------------------------------------------- attention

struct AttnCase {
  int64_t lq, lk, d, dv;
};

std::vector<float> run_attention(const AttnKernelInfo* ki, const AttnCase& c, const std::vector<float>& q,
                                 const std::vector<float>& k, const std::vector<float>& v, int mask_kind,
                                 const void* mask, bool causal) {
  const int64_t hq = 2;
  std::vector<float> o(hq * c.lq * c.dv + 3, kSentinel);
  AttnProblem p{};
  p.b = 1, p.hq = hq, p.hkv = 1, p.lq = c.lq, p.lk = c.lk, p.d = c.d, p.dv = c.dv;
  p.q = q.data(), p.q_sb = hq * c.lq * c.d, p.q_sh = c.lq * c.d, p.q_sl = c.d;
  p.k = k.data(), p.k_sb = c.lk * c.d, p.k_sh = c.lk * c.d, p.k_sl = c.d;
  p.v = v.data(), p.v_sb = c.lk * c.dv, p.v_sh = c.lk * c.dv, p.v_sl = c.dv;
  p.o = o.data(), p.o_sb = hq * c.lq * c.dv, p.o_sh = c.lq * c.dv, p.o_sl = c.dv;
  p.mask_kind = mask_kind, p.mask = mask, p.m_sb = 0, p.m_sh = 0, p.m_sl = c.lk;
  p.causal = causal;
  p.scale = 1.0f / std::sqrt(float(c.d));
  attention_f32(p, 2, kIsaPortable | ki->isa, ki);
  return o;
}

void test_attention() {
  int count = 0;
  const AttnKernelInfo* t = attention_kernel_table(&count);
  const AttnKernelInfo* ref = attention_kernel_by_name("attention_f32_flash__portable");
  const AttnCase cases[] = {{1, 1, 1, 1}, {3, 5, 7, 9}, {17, 130, 64, 64}, {8, 257, 33, 17}, {5, 128, 16, 80}, {9, 3, 4, 4}};
  int idx = 0;
  for (const AttnCase& c : cases) {
    Rng r(500 + idx++);
    std::vector<float> q(2 * c.lq * c.d), k(c.lk * c.d), v(c.lk * c.dv), madd(c.lq * c.lk);
    std::vector<uint8_t> mbool(c.lq * c.lk);
    for (auto& x : q) x = r.uniform(-2.0f, 2.0f);
    for (auto& x : k) x = r.uniform(-2.0f, 2.0f);
    for (auto& x : v) x = r.uniform(-1.0f, 1.0f);
    for (int64_t i = 0; i < c.lq * c.lk; ++i) {
      mbool[i] = r.range(0, 3) != 0 || i % c.lk == 0 ? 1 : 0;
      madd[i] = r.range(0, 5) == 0 ? -std::numeric_limits<float>::infinity() : r.uniform(-2.0f, 0.0f);
    }
    if (c.lq > 1)
      for (int64_t j = 0; j < c.lk; ++j) mbool[c.lk + j] = 0;  // a row with every key masked: zeros
    double smag = 0.0, vmax = 0.0;
    for (float x : v) vmax = std::max(vmax, double(std::fabs(x)));
    for (int64_t i = 0; i < 2 * c.lq; ++i)
      for (int64_t j = 0; j < c.lk; ++j) {
        double s = 0.0;
        for (int64_t e = 0; e < c.d; ++e) s += std::fabs(double(q[i * c.d + e]) * k[j * c.d + e]);
        smag = std::max(smag, s / std::sqrt(double(c.d)));
      }
    const double tol = 2 * 8 * kEps * (std::sqrt(double(c.d)) * smag + std::sqrt(double(c.lk)) + 8) * vmax;
    for (int mk = 0; mk < 3; ++mk)
      for (bool causal : {false, true}) {
        const void* mask = mk == 1 ? static_cast<const void*>(mbool.data()) : mk == 2 ? madd.data() : nullptr;
        const std::vector<float> yr = run_attention(ref, c, q, k, v, mk, mask, causal);
        for (int i = 0; i < count; ++i) {
          if (!have(t[i].isa) || t[i].isa == kIsaPortable) continue;
          g_used.insert(t[i].name);
          const std::vector<float> y = run_attention(&t[i], c, q, k, v, mk, mask, causal);
          char what[160];
          std::snprintf(what, sizeof what, "%s lq=%lld lk=%lld d=%lld dv=%lld mask=%d causal=%d", t[i].name,
                        (long long)c.lq, (long long)c.lk, (long long)c.d, (long long)c.dv, mk, int(causal));
          check_close(y, yr, std::vector<double>(y.size(), tol / (kMaxFactor * kEps)), 1, what);
        }
      }
  }
  // The softmax's exp: within 4 ulp of the portable one (each is within 2 ulp of expf), specials alike.
  std::vector<float> x;
  for (int i = 0; i <= 2000; ++i) x.push_back(-104.0f + 193.0f * float(i) / 2000.0f);
  for (float s : {0.0f, -0.0f, std::nanf(""), std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), -87.5f, -103.9f, 88.7f})
    x.push_back(s);
  std::vector<float> er(x.size());
  ref->exp(x.data(), er.data(), int64_t(x.size()));
  for (int i = 0; i < count; ++i) {
    if (!have(t[i].isa) || t[i].isa == kIsaPortable) continue;
    for (int64_t n : {int64_t(1), int64_t(3), int64_t(x.size())}) {
      std::vector<float> e(n + 3, kSentinel);
      t[i].exp(x.data(), e.data(), n);
      ++g_checks;
      for (int64_t j = 0; j < n; ++j) {
        const bool ok = (std::isnan(e[j]) && std::isnan(er[j])) || e[j] == er[j] ||
                        std::fabs(double(e[j]) - er[j]) <= 4 * kEps * std::fabs(double(er[j])) + 4e-45;
        if (!ok) {
          fail(std::string(t[i].name) + " exp(" + std::to_string(x[j]) + ") = " + std::to_string(e[j]) +
               " vs portable " + std::to_string(er[j]));
          break;
        }
      }
      check_tail(e, n, std::string(t[i].name) + " exp");
    }
  }
}

// ---------------------------------------------------------------------------------------------------- conv

struct DwCase {
  int64_t h, w, c, k, stride, pad, dil;
};

void test_conv() {
  const DwCase cases[] = {{5, 6, 1, 3, 1, 1, 1},   {7, 9, 3, 3, 1, 1, 1},  {6, 11, 4, 3, 2, 1, 1}, {9, 12, 17, 3, 1, 1, 1},
                          {8, 10, 33, 5, 1, 2, 1}, {7, 7, 5, 5, 2, 2, 1},  {6, 9, 16, 2, 1, 0, 1}, {9, 8, 20, 3, 1, 2, 2},
                          {4, 4, 7, 7, 1, 3, 1},   {1, 1, 4, 3, 1, 1, 1},  {3, 19, 64, 3, 1, 1, 1}};
  int idx = 0;
  for (const DwCase& dc : cases) {
    Rng r(700 + idx++);
    ConvShape s{};
    s.n = 2, s.h = dc.h, s.w = dc.w, s.c = dc.c, s.oc = dc.c, s.kh = s.kw = dc.k, s.sh = s.sw = dc.stride;
    s.ph = s.pw = s.ph1 = s.pw1 = dc.pad, s.dh = s.dw = dc.dil, s.groups = dc.c;
    s.oh = conv_out_size(s.h, s.kh, s.sh, 2 * s.ph, s.dh);
    s.ow = conv_out_size(s.w, s.kw, s.sw, 2 * s.pw, s.dw);
    const int64_t taps = s.kh * s.kw;
    std::vector<float> x(s.n * s.h * s.w * s.c), scales(s.c), bias(s.c);
    std::vector<int8_t> wq(s.c * taps);
    for (auto& v : x) v = r.uniform(-2.0f, 3.0f);
    for (auto& v : wq) v = int8_t(r.range(-128, 127));
    for (auto& v : scales) v = r.uniform(0.001f, 0.05f);
    for (auto& v : bias) v = r.uniform(-1.0f, 1.0f);
    const int64_t out = s.n * s.oh * s.ow * s.c;
    // Magnitude: |bias| + sum over in-image taps of |x w|.
    std::vector<double> mag(out + 3, 0.0);
    for (int64_t i = 0; i < s.n; ++i)
      for (int64_t oy = 0; oy < s.oh; ++oy)
        for (int64_t ox = 0; ox < s.ow; ++ox)
          for (int64_t ch = 0; ch < s.c; ++ch) {
            double m = std::fabs(bias[ch]);
            for (int64_t ky = 0; ky < s.kh; ++ky)
              for (int64_t kx = 0; kx < s.kw; ++kx) {
                const int64_t iy = oy * s.sh - s.ph + ky * s.dh, ix = ox * s.sw - s.pw + kx * s.dw;
                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                m += std::fabs(double(x[((i * s.h + iy) * s.w + ix) * s.c + ch]) * wq[ch * taps + ky * s.kw + kx] *
                               scales[ch]);
              }
            mag[((i * s.oh + oy) * s.ow + ox) * s.c + ch] = m;
          }
    std::vector<float> yr(out + 3, kSentinel);
    conv2d_dw(x.data(), s, wq.data(), scales.data(), bias.data(), 0, yr.data(), 2, kIsaPortable);
    for (uint32_t level : levels()) {
      std::vector<float> y(out + 3, kSentinel);
      const DwKernelInfo* used = conv2d_dw(x.data(), s, wq.data(), scales.data(), bias.data(), 0, y.data(), 2,
                                           level | kIsaPortable);
      g_used.insert(used->name);
      // The general kernel also runs the border pixels of the fixed-size paths.
      g_used.insert(select_conv_dw(DwKind::kGeneral, level | kIsaPortable)->name);
      char what[160];
      std::snprintf(what, sizeof what, "%s C=%lld %lldx%lld k=%lld stride=%lld pad=%lld dil=%lld forced %s", used->name,
                    (long long)s.c, (long long)s.h, (long long)s.w, (long long)dc.k, (long long)dc.stride,
                    (long long)dc.pad, (long long)dc.dil, isa_name(level));
      ++g_checks;
      if (used->isa > level) fail(std::string(what) + ": kernel above the forced level");
      check_close(y, yr, mag, taps, what);
    }
  }
  // The dyn path's quantizer: the same range and bytes as the portable one.
  int count = 0;
  const ConvQuantInfo* t = conv_quant_table(&count);
  const ConvQuantInfo* ref = &t[count - 1];
  for (int64_t n : {0, 1, 3, 4, 15, 16, 17, 33, 100, 1001}) {
    Rng r(900 + n);
    std::vector<float> x(n);
    for (auto& v : x) v = r.uniform(-3.0f, 5.0f);
    for (int bad = 0; bad < 3; ++bad) {
      std::vector<float> xb(x);
      if (bad && n > 0) xb[n / 2] = bad == 1 ? std::nanf("") : -std::numeric_limits<float>::infinity();
      float mn0 = 0.0f, mx0 = 0.0f;
      const bool ok0 = ref->minmax(xb.data(), n, &mn0, &mx0);
      for (int i = 0; i < count; ++i) {
        if (!have(t[i].isa)) continue;
        g_used.insert(t[i].name);
        float mn = 0.0f, mx = 0.0f;
        const bool ok = t[i].minmax(xb.data(), n, &mn, &mx);
        ++g_checks;
        if (ok != ok0 || (ok && (!same_bits_or_nan(mn, mn0) || !same_bits_or_nan(mx, mx0))))
          fail(std::string(t[i].name) + " minmax n=" + std::to_string(n) + " bad=" + std::to_string(bad));
      }
    }
    const float inv = 255.0f / 8.0f;
    const int32_t zp = 96;
    std::vector<float> xq(x);
    for (int64_t i = 0; i < n; i += 7) xq[i] = (float(i % 300) - 96.0f + 0.5f) / inv;  // ties, and out of range
    std::vector<uint8_t> q0(n + 4, 0xA5);
    ref->quantize(xq.data(), n, inv, zp, q0.data());
    for (int i = 0; i < count; ++i) {
      if (!have(t[i].isa)) continue;
      std::vector<uint8_t> q(n + 4, 0xA5);
      t[i].quantize(xq.data(), n, inv, zp, q.data());
      check_exact(q, q0, std::string(t[i].name) + " quantize n=" + std::to_string(n));
    }
  }
}

// ---------------------------------------------------------------------------------------------------- spmm

struct SparseCase {
  std::string label;
  AlignedBytes blob;
  SparseView view;
  std::vector<float> wd;  // dense dequantized weights [n][k] (for the magnitude)
  SparseCase(const std::string& l, size_t bytes) : label(l), blob(bytes) {}
};

// A dense W (n x k) with about `density` nonzeros (N:M: exactly nm_n of every nm_m), fp32 or int8 + scales.
void make_dense(Rng& r, int64_t n, int64_t k, bool i8, int nm_n, int nm_m, std::vector<float>* wf,
                std::vector<int8_t>* wi, std::vector<float>* sc) {
  wf->assign(n * k, 0.0f);
  wi->assign(n * k, 0);
  sc->resize(n);
  for (auto& s : *sc) s = r.uniform(0.001f, 0.05f);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      bool keep;
      if (nm_m) {
        const int64_t g0 = j / nm_m * nm_m, pos = (j - g0 + i) % nm_m;  // nm_n positions per group, row-shifted
        keep = pos < nm_n;
      } else {
        keep = r.range(0, 9) < 3;
      }
      if (!keep) continue;
      int8_t q = int8_t(r.range(-127, 127));
      if (q == 0) q = 1;
      (*wi)[i * k + j] = q;
      (*wf)[i * k + j] = i8 ? float(q) * (*sc)[i] : r.uniform(-1.0f, 1.0f) + (r.range(0, 1) ? 0.01f : -0.01f);
    }
}

void run_sparse_case(SparseCase& c, int64_t n, int64_t k) {
  c.view = sparse_view(c.blob.p, c.blob.size, true);
  const SpmmKind kind = spmm_kind(c.view);
  int count = 0;
  const SpmmKernelInfo* t = spmm_kernel_table(&count);
  const SpmmKernelInfo* ref1 = select_spmm(kind, 1, kIsaPortable);
  const SpmmKernelInfo* refm = select_spmm(kind, 2, kIsaPortable);
  Rng r(n * 131 + k);
  std::vector<float> bias(n);
  for (auto& b : bias) b = r.uniform(-1.0f, 1.0f);
  for (int64_t m : {1, 2, 3, 4, 5, 8, 17}) {
    std::vector<float> x(m * k);
    for (auto& v : x) v = r.uniform(-2.0f, 3.0f);
    std::vector<double> mag(m * n + 3, 0.0);
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        double s = std::fabs(bias[j]);
        for (int64_t e = 0; e < k; ++e) s += std::fabs(double(x[i * k + e]) * c.wd[j * k + e]);
        mag[i * n + j] = s;
      }
    std::vector<float> yr(m * n + 3, kSentinel);
    sparse_linear(c.view, x.data(), m, k, bias.data(), yr.data(), n, 2, kIsaPortable, m == 1 ? ref1 : refm);
    for (int i = 0; i < count; ++i) {
      if (t[i].kind != kind || !have(t[i].isa) || t[i].isa == kIsaPortable) continue;
      if (t[i].gemv != (m == 1) && !(m == 1 && t[i].mt > 1)) continue;  // GEMV kernels at M = 1 only
      g_used.insert(t[i].name);
      std::vector<float> y(m * n + 3, kSentinel);
      sparse_linear(c.view, x.data(), m, k, bias.data(), y.data(), n, 2, kIsaPortable | t[i].isa, &t[i]);
      char what[200];
      std::snprintf(what, sizeof what, "%s %s M=%lld N=%lld K=%lld", t[i].name, c.label.c_str(), (long long)m,
                    (long long)n, (long long)k);
      check_close(y, yr, mag, k, what);
    }
  }
}

void test_spmm() {
  struct Shape { int64_t n, k; };
  const Shape shapes[] = {{1, 1}, {7, 16}, {17, 33}, {40, 300}, {9, 130}, {33, 64}};
  int idx = 0;
  for (const Shape& sh : shapes)
    for (bool i8 : {false, true}) {
      Rng r(1200 + idx++);
      const SparseValues vt = i8 ? SparseValues::kI8 : SparseValues::kF32;
      const char* vs = i8 ? "i8" : "f32";
      std::vector<float> wf, sc;
      std::vector<int8_t> wi;
      make_dense(r, sh.n, sh.k, i8, 0, 0, &wf, &wi, &sc);
      const void* src = i8 ? static_cast<const void*>(wi.data()) : wf.data();
      for (int bits : {4, 8}) {
        SparseCase c(std::string("csr") + std::to_string(bits) + " " + vs, csr_pack_bytes(src, vt, sh.n, sh.k, bits));
        csr_pack(src, i8 ? sc.data() : nullptr, vt, sh.n, sh.k, bits, c.blob.p, c.blob.size);
        c.wd = wf;
        run_sparse_case(c, sh.n, sh.k);
      }
      const int blocks[][2] = {{16, 1}, {4, 1}, {1, 4}, {1, 8}};
      for (const auto& b : blocks) {
        SparseCase c("bsr" + std::to_string(b[0]) + "x" + std::to_string(b[1]) + " " + vs,
                     bsr_pack_bytes(src, vt, sh.n, sh.k, b[0], b[1]));
        bsr_pack(src, i8 ? sc.data() : nullptr, vt, sh.n, sh.k, b[0], b[1], c.blob.p, c.blob.size);
        c.wd = wf;
        run_sparse_case(c, sh.n, sh.k);
      }
      const int nms[][2] = {{2, 4}, {3, 8}, {1, 16}, {5, 16}};
      for (const auto& nm : nms) {
        make_dense(r, sh.n, sh.k, i8, nm[0], nm[1], &wf, &wi, &sc);
        const void* s2 = i8 ? static_cast<const void*>(wi.data()) : wf.data();
        SparseCase c("nm" + std::to_string(nm[0]) + ":" + std::to_string(nm[1]) + " " + vs,
                     nm_pack_bytes(vt, sh.n, sh.k, nm[0], nm[1]));
        nm_pack(s2, i8 ? sc.data() : nullptr, vt, sh.n, sh.k, nm[0], nm[1], c.blob.p, c.blob.size);
        c.wd = wf;
        run_sparse_case(c, sh.n, sh.k);
      }
    }
}

}  // namespace

void family_kernels(std::vector<std::pair<std::string, uint32_t>>* all) {
  int n = 0;
  const ActInfo* a = act_table(&n);
  for (int i = 0; i < n; ++i) all->push_back({a[i].name, a[i].isa});
  const LrKernelInfo* l = lowrank_kernel_table(&n);
  for (int i = 0; i < n; ++i)
    if (l[i].isa != kIsaPortable) all->push_back({l[i].name, l[i].isa});
  const AttnKernelInfo* at = attention_kernel_table(&n);
  for (int i = 0; i < n; ++i)
    if (at[i].isa != kIsaPortable) all->push_back({at[i].name, at[i].isa});
  const DwKernelInfo* d = conv_dw_kernel_table(&n);
  for (int i = 0; i < n; ++i) all->push_back({d[i].name, d[i].isa});
  const ConvQuantInfo* q = conv_quant_table(&n);
  for (int i = 0; i < n; ++i) all->push_back({q[i].name, q[i].isa});
  const SpmmKernelInfo* s = spmm_kernel_table(&n);
  for (int i = 0; i < n; ++i)
    if (s[i].isa != kIsaPortable) all->push_back({s[i].name, s[i].isa});
}

void test_families() {
  test_act();
  test_lowrank();
  test_attention();
  test_conv();
  test_spmm();
}

}  // namespace native_test
}  // namespace slimnn
