// The threaded conv drivers: activation quantization, im2col blocks, qgemm micro-kernels, depthwise rows.
// Compiled without ISA flags: all SIMD lives in the ISA files (this folder's and qgemm's).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>

#include "common/isa.h"
#include "common/scratch.h"
#include "common/threadpool.h"
#include "kernels/act/act.h"
#include "kernels/conv/conv.h"
#include "kernels/qgemm/driver.h"

namespace slimnn {

int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pads, int64_t dil) {
  const int64_t span = in + pads - dil * (k - 1) - 1;
  return span < 0 ? 0 : span / stride + 1;
}

void conv_apply_act(int act, float* y, int64_t rows, int64_t cols, int64_t ld, uint32_t isa_mask) {
  if (act == 0) return;
  if (act < kNumActivations) {
    apply_activation(select_act(isa_mask), act, y, rows, cols, ld);
    return;
  }
  const ConvQuantInfo* qk = select_conv_quant(isa_mask);
  for (int64_t r = 0; r < rows; ++r) {
    float* p = y + r * ld;
    if (act == kConvActRelu6)
      qk->clamp(p, cols, 0.0f, 6.0f);
    else  // kConvActHardSwish, torch's formula: x * relu6(x + 3) / 6
      qk->hardswish(p, cols);
  }
}

void conv_act_qrange(int act, float out_scale, int32_t out_zp, int32_t* lo, int32_t* hi) {
  *lo = 0, *hi = 255;
  if (act == 1 || act == kConvActRelu6) *lo = out_zp;  // q(0) = zp exactly
  if (act == kConvActRelu6) {
    // q(6) with the requant formula: rint(6 * (1 / scale)) + zp, clamped
    const float v = 6.0f * (1.0f / out_scale);
    *hi = v >= 255.0f ? 255 : std::min<int32_t>(255, static_cast<int32_t>(std::nearbyint(v)) + out_zp);
  }
}

namespace {

// Scale and zero point of a range [mn, mx] holding 0: the formula of quantize_row_u8.
#include "kernels/qgemm/u8_params.h"

constexpr int64_t kChunk = int64_t{1} << 16;  // elements per quantization task

}  // namespace

bool conv_quant_params(const float* x, int64_t count, float* scale, int32_t* zp) {
  const ConvQuantInfo* qk = select_conv_quant(current_isa_mask());
  float mn = 0.0f, mx = 0.0f;
  if (!qk->minmax(x, count, &mn, &mx)) return false;
  u8_range_params(mn, mx, scale, zp);
  return true;
}

void conv_im2col_u8(const uint8_t* q, const ConvShape& s, int64_t img, int64_t g, int32_t zp, int64_t p0, int64_t p1,
                    int64_t kp, uint8_t* out) {
  const int64_t cg = s.c / s.groups, k = s.kh * s.kw * cg;
  const uint8_t* base = q + img * s.h * s.w * s.c + g * cg;
  // With one group and dilation 1 along x, the kw taps of a kernel row are kw * c contiguous bytes.
  const bool rows_contiguous = s.groups == 1 && s.dw == 1;
  for (int64_t p = p0; p < p1; ++p) {
    uint8_t* row = out + (p - p0) * kp;
    const int64_t oy = p / s.ow, ox = p % s.ow;
    const int64_t ix0 = ox * s.sw - s.pw;
    const bool x_inside = ix0 >= 0 && ix0 + (s.kw - 1) * s.dw < s.w;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      const int64_t iy = oy * s.sh - s.ph + ky * s.dh;
      uint8_t* dst = row + ky * s.kw * cg;
      if (iy < 0 || iy >= s.h) {
        std::memset(dst, zp, s.kw * cg);
        continue;
      }
      if (rows_contiguous && x_inside) {
        std::memcpy(dst, base + (iy * s.w + ix0) * s.c, s.kw * cg);
        continue;
      }
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const int64_t ix = ix0 + kx * s.dw;
        if (ix < 0 || ix >= s.w)
          std::memset(dst + kx * cg, zp, cg);
        else
          std::memcpy(dst + kx * cg, base + (iy * s.w + ix) * s.c, cg);
      }
    }
    std::memset(row + k, 0, kp - k);
  }
}

namespace {

void im2col_f32(const float* x, const ConvShape& s, int64_t img, int64_t g, int64_t p0, int64_t p1, int64_t kp,
                float* out) {
  const int64_t cg = s.c / s.groups, k = s.kh * s.kw * cg;
  const float* base = x + img * s.h * s.w * s.c + g * cg;
  for (int64_t p = p0; p < p1; ++p) {
    float* row = out + (p - p0) * kp;
    const int64_t oy = p / s.ow, ox = p % s.ow;
    for (int64_t ky = 0; ky < s.kh; ++ky) {
      const int64_t iy = oy * s.sh - s.ph + ky * s.dh;
      for (int64_t kx = 0; kx < s.kw; ++kx) {
        const int64_t ix = ox * s.sw - s.pw + kx * s.dw;
        float* dst = row + (ky * s.kw + kx) * cg;
        if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w)
          std::fill(dst, dst + cg, 0.0f);
        else
          std::memcpy(dst, base + (iy * s.w + ix) * s.c, cg * sizeof(float));
      }
    }
    std::fill(row + k, row + kp, 0.0f);
  }
}

}  // namespace

namespace {

// conv2d_q8 and conv2d_q8_static: st null is the dynamic path, untouched.
const KernelInfo* conv2d_q8_impl(KernelKind kind, const float* x, const ConvShape& s, const Q8View* w,
                                 const float* bias, int act, int quant, const ConvStaticIO* st, float* y,
                                 bool* finite, int nthreads, uint32_t isa_mask) {
  nthreads = std::max(1, nthreads);
  if (finite) *finite = true;
  const int64_t pix = s.oh * s.ow, m = s.n * pix;
  const KernelInfo* ki = select_kernel(kind, m, isa_mask);
  if (m == 0 || s.oc == 0) return ki;
  const int64_t og = s.oc / s.groups;
  const int64_t kp = w[0].kp, in_img = s.h * s.w * s.c;
  const bool dyn = kind == KernelKind::kQ8Dyn;
  // Per pixel: each task quantizes its own rows (no image-wide pass); x is never copied as a whole.
  const bool per_pixel = dyn && !st && quant == kConvQuantPerPixel;
  // A 1x1, stride 1, unpadded conv of one group: GEMM row r is input pixel r (c values, stride c).
  const bool pointwise = s.kh == 1 && s.kw == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.ph1 == 0 &&
                         s.pw1 == 0 && s.groups == 1;
  const int64_t k_real = s.kh * s.kw * (s.c / s.groups);
  // 1x1, stride 1, no padding, one group: the activations are the GEMM rows when they have kp columns.
  const bool direct = pointwise && s.c == kp;

  // --- dyn: quantize the activations (one scale per image or per batch) ---
  std::unique_ptr<uint8_t[], FreeDeleter> q;
  std::unique_ptr<float[], FreeDeleter> row_scale;
  std::unique_ptr<int32_t[], FreeDeleter> row_zp;
  std::unique_ptr<uint8_t[], FreeDeleter> img_ok;
  std::unique_ptr<float[], FreeDeleter> img_scale;
  std::unique_ptr<int32_t[], FreeDeleter> img_zp;
  const uint8_t* qa = nullptr;  // the uint8 activations of the whole batch (q, or the static input)
  if (st) {
    // static: fixed (scale, zero point); an fp32 input is quantized in chunks with its finiteness checked
    img_ok = scratch<uint8_t>(s.n);
    for (int64_t i = 0; i < s.n; ++i) img_ok[i] = 1;
    if (st->xq) {
      qa = st->xq;
    } else {
      const ConvQuantInfo* qk = select_conv_quant(isa_mask);
      const int64_t chunks_img = std::max<int64_t>((in_img + kChunk - 1) / kChunk, 1);
      auto part_ok = scratch<uint8_t>(s.n * chunks_img);
      q = scratch<uint8_t>(s.n * in_img);
      const float inv = 1.0f / st->in_scale;
      auto quantize = [&](int64_t t) {
        const int64_t img = t / chunks_img, i0 = (t % chunks_img) * kChunk, i1 = std::min(in_img, i0 + kChunk);
        part_ok[t] = i1 > i0 ? qk->requant(x + img * in_img + i0, i1 - i0, inv, st->in_zp, 0, 255,
                                           q.get() + img * in_img + i0) : 1;
      };
      parallel_for(s.n * chunks_img, nthreads, quantize);
      for (int64_t t = 0; t < s.n * chunks_img; ++t)
        if (!part_ok[t]) img_ok[t / chunks_img] = 0;
      qa = q.get();
    }
    row_scale = scratch<float>(m);
    row_zp = scratch<int32_t>(m);
    for (int64_t r = 0; r < m; ++r) row_scale[r] = st->in_scale, row_zp[r] = st->in_zp;
  } else if (dyn && !per_pixel) {
    const ConvQuantInfo* qk = select_conv_quant(isa_mask);
    const int64_t chunks_img = (in_img + kChunk - 1) / kChunk;
    const int64_t n_chunks = s.n * std::max<int64_t>(chunks_img, 1);
    auto part_mn = scratch<float>(n_chunks), part_mx = scratch<float>(n_chunks);
    auto part_ok = scratch<uint8_t>(n_chunks);
    auto minmax = [&](int64_t t) {
      const int64_t img = t / std::max<int64_t>(chunks_img, 1), ch = t % std::max<int64_t>(chunks_img, 1);
      const int64_t i0 = ch * kChunk, i1 = std::min(in_img, i0 + kChunk);
      float mn = 0.0f, mx = 0.0f;
      part_ok[t] = i1 > i0 ? qk->minmax(x + img * in_img + i0, i1 - i0, &mn, &mx) : true;
      part_mn[t] = mn, part_mx[t] = mx;
    };
    parallel_for(n_chunks, nthreads, minmax);
    img_ok = scratch<uint8_t>(s.n);
    img_scale = scratch<float>(s.n);
    img_zp = scratch<int32_t>(s.n);
    float tmn = 0.0f, tmx = 0.0f;
    bool tok = true;
    for (int64_t i = 0; i < s.n; ++i) {
      float mn = 0.0f, mx = 0.0f;
      bool ok = true;
      for (int64_t c = 0; c < std::max<int64_t>(chunks_img, 1); ++c) {
        const int64_t t = i * std::max<int64_t>(chunks_img, 1) + c;
        ok = ok && part_ok[t];
        mn = std::min(mn, part_mn[t]), mx = std::max(mx, part_mx[t]);
      }
      img_ok[i] = ok;
      tok = tok && ok;
      tmn = std::min(tmn, mn), tmx = std::max(tmx, mx);
      u8_range_params(mn, mx, &img_scale[i], &img_zp[i]);
    }
    if (quant == kConvQuantPerTensor) {
      float sc;
      int32_t z;
      u8_range_params(tmn, tmx, &sc, &z);
      for (int64_t i = 0; i < s.n; ++i) img_ok[i] = tok, img_scale[i] = sc, img_zp[i] = z;
    }
    q = scratch<uint8_t>(s.n * in_img);
    auto quantize = [&](int64_t t) {
      const int64_t img = t / std::max<int64_t>(chunks_img, 1), ch = t % std::max<int64_t>(chunks_img, 1);
      const int64_t i0 = ch * kChunk, i1 = std::min(in_img, i0 + kChunk);
      if (i1 <= i0) return;
      uint8_t* dst = q.get() + img * in_img + i0;
      if (!img_ok[img])
        std::memset(dst, 0, i1 - i0);  // defined bytes; the image's output is overwritten with NaN below
      else
        qk->quantize(x + img * in_img + i0, i1 - i0, 1.0f / img_scale[img], img_zp[img], dst);
    };
    parallel_for(n_chunks, nthreads, quantize);
    qa = q.get();
    row_scale = scratch<float>(m);
    row_zp = scratch<int32_t>(m);
    for (int64_t r = 0; r < m; ++r) row_scale[r] = img_scale[r / pix], row_zp[r] = img_zp[r / pix];
  }

  // --- tasks: (group, block of output pixels, range of column blocks) ---
  const int64_t elem = dyn ? 1 : int64_t(sizeof(float));
  int64_t rc = (int64_t{1} << 16) / std::max<int64_t>(kp * elem, 1);  // an A block of about 64 KiB
  rc = std::max<int64_t>(ki->mr, std::min<int64_t>(rc, 512) / ki->mr * ki->mr);
  const int64_t row_tasks = (m + rc - 1) / rc;
  const int64_t panels_total = w[0].np / 16;
  const int64_t n_nb = (panels_total + ki->np - 1) / ki->np;
  const int64_t want = 2 * int64_t(nthreads);
  const int64_t col_splits =
      s.groups * row_tasks >= want ? 1 : std::min<int64_t>(n_nb, (want + s.groups * row_tasks - 1) / (s.groups * row_tasks));
  const int64_t nb_per = (n_nb + col_splits - 1) / col_splits;

  auto task = [&](int64_t t) {
    const int64_t g = t / (row_tasks * col_splits), rem = t % (row_tasks * col_splits);
    const int64_t rt = rem / col_splits, cs = rem % col_splits;
    const int64_t r0 = rt * rc, r1 = std::min(m, r0 + rc);
    const int64_t nb0 = cs * nb_per, nb1 = std::min(n_nb, nb0 + nb_per);
    if (nb0 >= nb1 || r0 >= r1) return;
    const Q8View& wv = w[g];
    const Q8Epilogue base = qdriver::q8_epilogue(wv, s.oc);
    std::unique_ptr<uint8_t[], FreeDeleter> abuf;
    std::unique_ptr<float[], FreeDeleter> pscale, frow;
    std::unique_ptr<int32_t[], FreeDeleter> pzp;
    std::unique_ptr<uint8_t[], FreeDeleter> pok;
    const void* a;
    int64_t lda = kp;
    bool any_bad = false;
    if (per_pixel) {
      // Quantize rows [r0, r1) (their receptive fields) with the micro-kernel's row quantizer.
      abuf = scratch<uint8_t>((r1 - r0) * kp);
      pscale = scratch<float>(r1 - r0);
      pzp = scratch<int32_t>(r1 - r0);
      pok = scratch<uint8_t>(r1 - r0);
      if (!pointwise) frow = scratch<float>(kp);
      for (int64_t r = r0; r < r1; ++r) {
        const float* src = x + r * s.c;
        if (!pointwise) {
          im2col_f32(x, s, r / pix, g, r % pix, r % pix + 1, kp, frow.get());
          src = frow.get();
        }
        const bool ok = qdriver::quantize_row(ki->quantize, src, k_real, kp, abuf.get() + (r - r0) * kp,
                                              &pscale[r - r0], &pzp[r - r0]);
        pok[r - r0] = ok;
        any_bad = any_bad || !ok;
      }
      a = abuf.get();
    } else if (direct) {
      a = dyn ? static_cast<const void*>(qa + r0 * kp) : static_cast<const void*>(x + r0 * kp);
    } else {
      abuf = scratch<uint8_t>((r1 - r0) * kp * elem);
      // im2col of rows [r0, r1), which may span images
      for (int64_t r = r0; r < r1;) {
        const int64_t img = r / pix, p0 = r % pix, p1 = std::min(pix, p0 + (r1 - r));
        if (dyn)
          conv_im2col_u8(qa, s, img, g, row_zp[r], p0, p1, kp, abuf.get() + (r - r0) * kp);
        else
          im2col_f32(x, s, img, g, p0, p1, kp, reinterpret_cast<float*>(abuf.get()) + (r - r0) * kp);
        r += p1 - p0;
      }
      a = abuf.get();
    }
    // uint8 output: each micro-kernel call writes an fp32 tile (mr x one column block) that is requantized
    // while in L1
    const bool out_u8 = st && st->yq;
    std::unique_ptr<float[], FreeDeleter> tile;
    int32_t qlo = 0, qhi = 255;
    const ConvQuantInfo* qk = out_u8 ? select_conv_quant(isa_mask) : nullptr;
    if (out_u8) {
      tile = scratch<float>(int64_t(ki->mr) * ki->np * 16);
      conv_act_qrange(act, st->out_scale, st->out_zp, &qlo, &qhi);
    }
    const bool act_in_clamp = out_u8 && (act == 1 || act == kConvActRelu6);
    for (int64_t nb = nb0; nb < nb1; ++nb) {
      const qdriver::ColBlock c = qdriver::col_block(nb, ki->np, panels_total);
      // wv.n == og (checked at load)
      Q8Epilogue e = qdriver::q8_block_epilogue(base, wv, bias ? bias + g * og : nullptr, c);
      if (out_u8) e.ldy = ki->np * 16;
      qdriver::for_row_steps(r0, r1, ki->mr, [&](int64_t r, int mr) {
        e.y = out_u8 ? tile.get() : y + r * s.oc + g * og + c.n0;
        if (dyn) {
          e.a_scale = per_pixel ? pscale.get() + (r - r0) : row_scale.get() + r;
          e.a_zp = per_pixel ? pzp.get() + (r - r0) : row_zp.get() + r;
          reinterpret_cast<Q8DynUkernel>(ki->fn)(mr, static_cast<int>(c.panels),
                                                 static_cast<const uint8_t*>(a) + (r - r0) * lda, lda,
                                                 wv.w + c.p0 * 16 * kp, kp, e);
        } else {
          reinterpret_cast<Q8WoUkernel>(ki->fn)(mr, static_cast<int>(c.panels),
                                                static_cast<const float*>(a) + (r - r0) * lda, lda,
                                                wv.w + c.p0 * 16 * kp, kp, e);
        }
        if (!out_u8) {
          conv_apply_act(act, e.y, mr, e.ncols, s.oc, isa_mask);
          return;
        }
        if (!act_in_clamp) conv_apply_act(act, e.y, mr, e.ncols, e.ldy, isa_mask);
        const float inv = 1.0f / st->out_scale;
        for (int i = 0; i < mr; ++i)
          qk->requant(e.y + i * e.ldy, e.ncols, inv, st->out_zp, qlo, qhi, st->yq + (r + i) * s.oc + g * og + c.n0);
      });
    }
    if (any_bad) {  // rows whose receptive field was not finite: NaN over the columns this task wrote
      const qdriver::ColBlock cl = qdriver::col_block(nb1 - 1, ki->np, panels_total);
      const int64_t n0 = qdriver::col_block(nb0, ki->np, panels_total).n0;
      const int64_t n1 = std::min<int64_t>(og, cl.n0 + cl.panels * 16);
      for (int64_t r = r0; r < r1; ++r)
        if (!pok[r - r0])
          std::fill(y + r * s.oc + g * og + n0, y + r * s.oc + g * og + n1, std::numeric_limits<float>::quiet_NaN());
    }
  };
  parallel_for(s.groups * row_tasks * col_splits, nthreads, task);

  if (dyn && !per_pixel)
    for (int64_t i = 0; i < s.n; ++i)
      if (!img_ok[i]) {
        if (finite) *finite = false;
        if (!st || !st->yq)
          std::fill(y + i * pix * s.oc, y + (i + 1) * pix * s.oc, std::numeric_limits<float>::quiet_NaN());
      }
  return ki;
}

}  // namespace

const KernelInfo* conv2d_q8(KernelKind kind, const float* x, const ConvShape& s, const Q8View* w, const float* bias,
                            int act, int quant, float* y, int nthreads, uint32_t isa_mask) {
  return conv2d_q8_impl(kind, x, s, w, bias, act, quant, nullptr, y, nullptr, nthreads, isa_mask);
}

const KernelInfo* conv2d_q8_static(const float* x, const ConvShape& s, const Q8View* w, const float* bias, int act,
                                   const ConvStaticIO& io, float* y, bool* finite, int nthreads, uint32_t isa_mask) {
  return conv2d_q8_impl(KernelKind::kQ8Dyn, x, s, w, bias, act, kConvQuantPerImage, &io, y, finite, nthreads,
                        isa_mask);
}

const DwKernelInfo* conv2d_dw(const float* x, const ConvShape& s, const int8_t* wq, const float* scales,
                              const float* bias, int act, float* y, int nthreads, uint32_t isa_mask) {
  const int64_t c = s.c, cp = (c + 15) / 16 * 16, taps = s.kh * s.kw;
  // The int8 weights, expanded to fp32 [tap][cp] (C * kh * kw values; zero tail). The modules prepare them
  // once (conv2d_dw_prepared); this entry forms them per call.
  auto wf = scratch<float>(taps * cp);
  auto bf = scratch<float>(cp);
  for (int64_t t = 0; t < taps; ++t)
    for (int64_t ch = 0; ch < cp; ++ch)
      wf[t * cp + ch] = ch < c ? float(wq[ch * taps + t]) * scales[ch] : 0.0f;
  for (int64_t ch = 0; ch < cp; ++ch) bf[ch] = bias && ch < c ? bias[ch] : 0.0f;
  return conv2d_dw_prepared(x, s, wf.get(), bf.get(), act, nullptr, y, nullptr, nthreads, isa_mask);
}

const DwKernelInfo* conv2d_dw_prepared(const float* x, const ConvShape& s, const float* wf, const float* bias_p,
                                       int act, const ConvStaticIO* io, float* y, bool* finite, int nthreads,
                                       uint32_t isa_mask) {
  nthreads = std::max(1, nthreads);
  if (finite) *finite = true;
  const bool fixed = s.dh == 1 && s.dw == 1 && s.kh == s.kw && (s.kh == 3 || s.kh == 5);
  const DwKernelInfo* gen = select_conv_dw(DwKind::kGeneral, isa_mask);
  const DwKernelInfo* fast = fixed ? select_conv_dw(s.kh == 3 ? DwKind::k3x3 : DwKind::k5x5, isa_mask) : gen;
  const int64_t rows = s.n * s.oh;
  if (rows == 0 || s.ow == 0 || s.c == 0) return fast;
  const int64_t c = s.c, cp = (c + 15) / 16 * 16;
  const uint8_t* xq = io ? io->xq : nullptr;
  uint8_t* yq = io ? io->yq : nullptr;
  int32_t qlo = 0, qhi = 255;
  if (yq) conv_act_qrange(act, io->out_scale, io->out_zp, &qlo, &qhi);
  const ConvQuantInfo* qk = select_conv_quant(isa_mask);
  // Output columns whose window lies inside the image horizontally: [ox_a, ox_b).
  const int64_t ox_a = std::min(s.ow, (s.pw + s.sw - 1) / s.sw);
  const int64_t last = s.w - 1 - (s.kw - 1) * s.dw + s.pw;  // largest ox * sw allowed
  const int64_t ox_b = last < 0 ? 0 : std::max(ox_a, std::min(s.ow, last / s.sw + 1));
  // Rows of output pixels per task: about 16K outputs each.
  const int64_t per = std::max<int64_t>(1, (int64_t{1} << 14) / std::max<int64_t>(s.ow * c, 1));
  const int64_t n_tasks = (rows + per - 1) / per;
  const bool fuse_relu6 = act == kConvActRelu6;  // the kernels clamp each output as they store it
  std::unique_ptr<uint8_t[], FreeDeleter> task_ok;
  if (yq) {
    task_ok = scratch<uint8_t>(n_tasks);
    std::memset(task_ok.get(), 1, n_tasks);
  }
  auto task = [&](int64_t t) {
    // uint8 output: each output row is computed in fp32 here (in L1/L2), then requantized
    std::unique_ptr<float[], FreeDeleter> rowbuf;
    if (yq) rowbuf = scratch<float>(s.ow * c);
    for (int64_t r = t * per; r < std::min(rows, (t + 1) * per); ++r) {
      const int64_t img = r / s.oh, oy = r % s.oh;
      DwArgs a;
      a.x = xq ? nullptr : x + img * s.h * s.w * c;
      a.xq = xq ? xq + img * s.h * s.w * c : nullptr;
      a.xs = xq ? io->in_scale : 0.0f;
      a.xzs = xq ? float(io->in_zp) * io->in_scale : 0.0f;
      a.wf = wf;
      a.bias = bias_p;
      a.y = yq ? rowbuf.get() : y + (img * s.oh + oy) * s.ow * c;
      a.h = s.h, a.w = s.w, a.c = c, a.cp = cp;
      a.kh = s.kh, a.kw = s.kw, a.sh = s.sh, a.sw = s.sw, a.ph = s.ph, a.pw = s.pw, a.dh = s.dh, a.dw = s.dw;
      a.oy = oy;
      a.lo = fuse_relu6 ? 0.0f : -std::numeric_limits<float>::infinity();
      a.hi = fuse_relu6 ? 6.0f : std::numeric_limits<float>::infinity();
      const int64_t iy0 = oy * s.sh - s.ph;
      const bool rows_in = iy0 >= 0 && iy0 + (s.kh - 1) * s.dh < s.h;
      if (fixed && rows_in && ox_a < ox_b) {
        gen->fn(a, 0, ox_a);
        fast->fn(a, ox_a, ox_b);
        gen->fn(a, ox_b, s.ow);
      } else {
        gen->fn(a, 0, s.ow);
      }
      if (!fuse_relu6 && !(yq && act == 1)) conv_apply_act(act, a.y, 1, s.ow * c, s.ow * c, isa_mask);
      if (yq && !qk->requant(a.y, s.ow * c, 1.0f / io->out_scale, io->out_zp, qlo, qhi,
                             yq + (img * s.oh + oy) * s.ow * c))
        task_ok[t] = 0;
    }
  };
  parallel_for(n_tasks, nthreads, task);
  if (yq && finite)
    for (int64_t t = 0; t < n_tasks; ++t)
      if (!task_ok[t]) *finite = false;
  return fast;
}

}  // namespace slimnn
