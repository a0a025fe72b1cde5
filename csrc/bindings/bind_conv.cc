// Bindings of the conv family (kernels/conv) and of the embedding lookup (kernels/embed). Tensors cross as (pointer, element count) integers;
// slimnn's Python layer checks dtypes, shapes and contiguity, and this layer re-checks what memory safety
// relies on (sizes against the shape, each weight view against the conv's group shape).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "bindings/bindings.h"
#include "common/isa.h"
#include "formats/q8.h"
#include "kernels/conv/conv.h"
#include "kernels/embed/embed.h"

namespace py = pybind11;

namespace slimnn {
namespace {

// dims: n, h, w, c, oc, kh, kw, sh, sw, pad_top, pad_bottom, pad_left, pad_right, dh, dw, groups.
ConvShape make_shape(const std::vector<int64_t>& d, const char* op) {
  const std::string o(op);
  if (d.size() != 16) throw py::value_error(o + ": shape must have 16 entries");
  ConvShape s;
  s.n = d[0], s.h = d[1], s.w = d[2], s.c = d[3], s.oc = d[4], s.kh = d[5], s.kw = d[6], s.sh = d[7], s.sw = d[8];
  s.ph = d[9], s.ph1 = d[10], s.pw = d[11], s.pw1 = d[12], s.dh = d[13], s.dw = d[14], s.groups = d[15];
  if (s.n < 0 || s.h < 1 || s.w < 1 || s.c < 1 || s.oc < 1) throw py::value_error(o + ": bad tensor sizes");
  if (s.kh < 1 || s.kw < 1 || s.sh < 1 || s.sw < 1 || s.dh < 1 || s.dw < 1 || s.ph < 0 || s.pw < 0 || s.ph1 < 0 || s.pw1 < 0)
    throw py::value_error(o + ": kernel size, stride and dilation must be >= 1, padding >= 0");
  const int64_t lim = int64_t{1} << 24;
  if (s.h > lim || s.w > lim || s.c > lim || s.oc > lim || s.kh > 4096 || s.kw > 4096 || s.ph > lim || s.pw > lim || s.ph1 > lim || s.pw1 > lim ||
      s.sh > lim || s.sw > lim || s.dh > 4096 || s.dw > 4096 || s.n > lim)
    throw py::value_error(o + ": sizes out of range");
  if (s.groups < 1 || s.c % s.groups != 0 || s.oc % s.groups != 0)
    throw py::value_error(o + ": groups must divide in and out channels");
  s.oh = conv_out_size(s.h, s.kh, s.sh, s.ph + s.ph1, s.dh);
  s.ow = conv_out_size(s.w, s.kw, s.sw, s.pw + s.pw1, s.dw);
  return s;
}

void check_act(int act, const char* op) {
  if (act < 0 || act >= kConvNumActivations) throw py::value_error(std::string(op) + ": unknown activation code");
}

ConvStaticIO static_io(uintptr_t x, bool x_u8, float in_scale, int in_zp, uintptr_t y, bool y_u8, float out_scale,
                       int out_zp, const char* op) {
  const std::string o(op);
  auto check = [&](float sc, int zp, const char* what) {
    if (!(sc > 0.0f) || !std::isfinite(sc) || !std::isfinite(1.0f / sc) || zp < 0 || zp > 255)
      throw py::value_error(o + ": " + what + " scale must be finite and > 0 (and its reciprocal finite), zero point in [0, 255]");
  };
  check(in_scale, in_zp, "input");
  if (y_u8) check(out_scale, out_zp, "output");
  ConvStaticIO io;
  io.xq = x_u8 ? as_ptr<const uint8_t>(x) : nullptr;
  io.in_scale = in_scale, io.in_zp = in_zp;
  io.yq = y_u8 ? as_ptr<uint8_t>(y) : nullptr;
  io.out_scale = y_u8 ? out_scale : 1.0f, io.out_zp = y_u8 ? out_zp : 0;
  return io;
}

std::vector<Q8View> group_views(const ConvShape& s, uintptr_t blob, size_t group_bytes, const char* op) {
  std::vector<Q8View> views;
  const int64_t kg = s.kh * s.kw * (s.c / s.groups), og = s.oc / s.groups;
  for (int64_t g = 0; g < s.groups; ++g) {
    views.push_back(q8_view(as_ptr<const uint8_t>(blob) + g * group_bytes, group_bytes, false));
    if (views.back().n != og || views.back().k != kg)
      throw py::value_error(std::string(op) + ": packed weights of group " + std::to_string(g) + " are " +
                            std::to_string(views.back().n) + " x " + std::to_string(views.back().k) +
                            ", the conv needs " + std::to_string(og) + " x " + std::to_string(kg));
  }
  return views;
}

const ConvQuantInfo* quant_by_isa(const std::string& isa, const char* op) {
  int n = 0;
  const ConvQuantInfo* t = conv_quant_table(&n);
  for (int i = 0; i < n; ++i)
    if (isa == std::string(t[i].name).substr(std::string("conv_quantize_u8__").size())) {
      if ((t[i].isa & current_isa_mask()) == 0) throw py::value_error(std::string(op) + ": this CPU lacks " + isa);
      return &t[i];
    }
  throw py::value_error(std::string(op) + ": no helpers for ISA " + isa);
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv_kernels", [] {
    py::list out;
    int n = 0;
    const DwKernelInfo* t = conv_dw_kernel_table(&n);
    static const char* kinds[] = {"dw_general", "dw_3x3", "dw_5x5"};
    for (int i = 0; i < n; ++i) {
      py::dict d;
      d["name"] = t[i].name;
      d["kind"] = kinds[static_cast<int>(t[i].kind)];
      d["isa"] = isa_name(t[i].isa);
      d["available"] = (t[i].isa & detected_isa_mask()) != 0;
      out.append(d);
    }
    const ConvQuantInfo* qt = conv_quant_table(&n);
    for (int i = 0; i < n; ++i) {
      py::dict d;
      d["name"] = qt[i].name;
      d["kind"] = "quantize_u8";
      d["isa"] = isa_name(qt[i].isa);
      d["available"] = (qt[i].isa & detected_isa_mask()) != 0;
      out.append(d);
    }
    return out;
  });
  m.def(
      "conv_out_size",
      [](int64_t size, int64_t k, int64_t stride, int64_t pads, int64_t dil) {
        if (size < 0 || k < 1 || stride < 1 || pads < 0 || dil < 1 || size > (int64_t{1} << 40) || k > 4096 ||
            pads > (int64_t{1} << 40) || dil > 4096)
          throw py::value_error("conv_out_size: kernel size, stride and dilation must be >= 1, padding >= 0");
        return conv_out_size(size, k, stride, pads, dil);
      },
      py::arg("size"), py::arg("k"), py::arg("stride"), py::arg("pads"),
        py::arg("dilation"));
  m.def(
      "conv2d_q8",
      [](const std::string& kind, uintptr_t x, int64_t x_numel, const std::vector<int64_t>& dims, uintptr_t blob,
         size_t group_bytes, uintptr_t bias, int act, int quant, uintptr_t y, int64_t y_numel, int nthreads) {
        const ConvShape s = make_shape(dims, "conv2d_q8");
        check_act(act, "conv2d_q8");
        KernelKind kk;
        if (kind == "q8_dyn") kk = KernelKind::kQ8Dyn;
        else if (kind == "q8_wo") kk = KernelKind::kQ8Wo;
        else throw py::value_error("conv2d_q8: kind must be 'q8_dyn' or 'q8_wo'");
        if (quant != kConvQuantPerTensor && quant != kConvQuantPerImage && quant != kConvQuantPerPixel)
          throw py::value_error("conv2d_q8: quant must be 0 (per tensor), 1 (per image) or 2 (per pixel)");
        if (x_numel != s.n * s.h * s.w * s.c) throw py::value_error("conv2d_q8: input size does not match the shape");
        if (y_numel != s.n * s.oh * s.ow * s.oc) throw py::value_error("conv2d_q8: output size does not match the shape");
        const std::vector<Q8View> views = group_views(s, blob, group_bytes, "conv2d_q8");
        const KernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = conv2d_q8(kk, as_ptr<const float>(x), s, views.data(), as_ptr<const float>(bias), act, quant,
                         as_ptr<float>(y), nthreads, current_isa_mask());
        }
        return std::string(ki->name);
      },
      py::arg("kind"), py::arg("x"), py::arg("x_numel"), py::arg("dims"), py::arg("blob"), py::arg("group_bytes"),
      py::arg("bias"), py::arg("act"), py::arg("quant"), py::arg("y"), py::arg("y_numel"), py::arg("nthreads"));
  m.def(
      "conv2d_dw",
      [](uintptr_t x, int64_t x_numel, const std::vector<int64_t>& dims, uintptr_t wq, int64_t w_numel,
         uintptr_t scales, uintptr_t bias, int act, uintptr_t y, int64_t y_numel, int nthreads) {
        const ConvShape s = make_shape(dims, "conv2d_dw");
        check_act(act, "conv2d_dw");
        if (s.groups != s.c || s.oc != s.c) throw py::value_error("conv2d_dw: needs groups == in == out channels");
        if (x_numel != s.n * s.h * s.w * s.c) throw py::value_error("conv2d_dw: input size does not match the shape");
        if (y_numel != s.n * s.oh * s.ow * s.oc) throw py::value_error("conv2d_dw: output size does not match the shape");
        if (w_numel != s.c * s.kh * s.kw) throw py::value_error("conv2d_dw: weight size does not match the shape");
        const DwKernelInfo* ki;
        {
          py::gil_scoped_release nogil;
          ki = conv2d_dw(as_ptr<const float>(x), s, as_ptr<const int8_t>(wq), as_ptr<const float>(scales),
                         as_ptr<const float>(bias), act, as_ptr<float>(y), nthreads, current_isa_mask());
        }
        return std::string(ki->name);
      },
      py::arg("x"), py::arg("x_numel"), py::arg("dims"), py::arg("wq"), py::arg("w_numel"), py::arg("scales"),
      py::arg("bias"), py::arg("act"), py::arg("y"), py::arg("y_numel"), py::arg("nthreads"));
  // Static (calibrated) activation quantization: x and y are uint8 codes when x_u8 / y_u8, else fp32.
  m.def(
      "conv2d_q8_static",
      [](uintptr_t x, bool x_u8, int64_t x_numel, const std::vector<int64_t>& dims, uintptr_t blob,
         size_t group_bytes, uintptr_t bias, int act, float in_scale, int in_zp, uintptr_t y, bool y_u8,
         float out_scale, int out_zp, int64_t y_numel, int nthreads) {
        const ConvShape s = make_shape(dims, "conv2d_q8_static");
        check_act(act, "conv2d_q8_static");
        const ConvStaticIO io = static_io(x, x_u8, in_scale, in_zp, y, y_u8, out_scale, out_zp, "conv2d_q8_static");
        if (x_numel != s.n * s.h * s.w * s.c) throw py::value_error("conv2d_q8_static: input size does not match the shape");
        if (y_numel != s.n * s.oh * s.ow * s.oc) throw py::value_error("conv2d_q8_static: output size does not match the shape");
        const std::vector<Q8View> views = group_views(s, blob, group_bytes, "conv2d_q8_static");
        const KernelInfo* ki;
        bool finite = true;
        {
          py::gil_scoped_release nogil;
          ki = conv2d_q8_static(x_u8 ? nullptr : as_ptr<const float>(x), s, views.data(), as_ptr<const float>(bias),
                                act, io, y_u8 ? nullptr : as_ptr<float>(y), &finite, nthreads, current_isa_mask());
        }
        return py::make_tuple(std::string(ki->name), finite);
      },
      py::arg("x"), py::arg("x_u8"), py::arg("x_numel"), py::arg("dims"), py::arg("blob"), py::arg("group_bytes"),
      py::arg("bias"), py::arg("act"), py::arg("in_scale"), py::arg("in_zp"), py::arg("y"), py::arg("y_u8"),
      py::arg("out_scale"), py::arg("out_zp"), py::arg("y_numel"), py::arg("nthreads"));
  m.def(
      "conv2d_dw_prepared",
      [](uintptr_t x, bool x_u8, int64_t x_numel, const std::vector<int64_t>& dims, uintptr_t wf, int64_t wf_numel,
         uintptr_t bias_p, int64_t bias_numel, int act, float in_scale, int in_zp, uintptr_t y, bool y_u8,
         float out_scale, int out_zp, int64_t y_numel, int nthreads) {
        const ConvShape s = make_shape(dims, "conv2d_dw_prepared");
        check_act(act, "conv2d_dw_prepared");
        if (s.groups != s.c || s.oc != s.c) throw py::value_error("conv2d_dw_prepared: needs groups == in == out channels");
        const int64_t cp = (s.c + 15) / 16 * 16;
        if (x_numel != s.n * s.h * s.w * s.c) throw py::value_error("conv2d_dw_prepared: input size does not match the shape");
        if (y_numel != s.n * s.oh * s.ow * s.oc) throw py::value_error("conv2d_dw_prepared: output size does not match the shape");
        if (wf_numel != s.kh * s.kw * cp || bias_numel != cp)
          throw py::value_error("conv2d_dw_prepared: prepared weights must be kh*kw x cp and bias cp floats");
        const bool st = x_u8 || y_u8;
        const ConvStaticIO io = st ? static_io(x, x_u8, in_scale, in_zp, y, y_u8, out_scale, out_zp, "conv2d_dw_prepared")
                                   : ConvStaticIO{};
        const DwKernelInfo* ki;
        bool finite = true;
        {
          py::gil_scoped_release nogil;
          ki = conv2d_dw_prepared(x_u8 ? nullptr : as_ptr<const float>(x), s, as_ptr<const float>(wf),
                                  as_ptr<const float>(bias_p), act, st ? &io : nullptr, y_u8 ? nullptr : as_ptr<float>(y),
                                  &finite, nthreads, current_isa_mask());
        }
        return py::make_tuple(std::string(ki->name), finite);
      },
      py::arg("x"), py::arg("x_u8"), py::arg("x_numel"), py::arg("dims"), py::arg("wf"), py::arg("wf_numel"),
      py::arg("bias_p"), py::arg("bias_numel"), py::arg("act"), py::arg("in_scale"), py::arg("in_zp"), py::arg("y"),
      py::arg("y_u8"), py::arg("out_scale"), py::arg("out_zp"), py::arg("y_numel"), py::arg("nthreads"));
  m.def(
      "conv_requant_u8",
      [](uintptr_t x, int64_t n, float inv, int zp, int lo, int hi, uintptr_t q, const std::string& isa) {
        if (n < 0 || zp < 0 || zp > 255 || lo < 0 || hi > 255 || lo > hi)
          throw py::value_error("conv_requant_u8: need n >= 0 and 0 <= lo <= hi <= 255, 0 <= zp <= 255");
        const ConvQuantInfo* k = quant_by_isa(isa, "conv_requant_u8");
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = k->requant(as_ptr<const float>(x), n, inv, zp, lo, hi, as_ptr<uint8_t>(q));
        }
        return ok;
      },
      py::arg("x"), py::arg("n"), py::arg("inv"), py::arg("zp"), py::arg("lo"), py::arg("hi"), py::arg("q"),
      py::arg("isa"), "Test hook: one ISA's requant of n floats (the static path's uint8 epilogue).");
  m.def(
      "conv_hardswish",
      [](uintptr_t y, int64_t n, const std::string& isa) {
        if (n < 0) throw py::value_error("conv_hardswish: n must be >= 0");
        const ConvQuantInfo* k = quant_by_isa(isa, "conv_hardswish");
        py::gil_scoped_release nogil;
        k->hardswish(as_ptr<float>(y), n);
      },
      py::arg("y"), py::arg("n"), py::arg("isa"), "Test hook: one ISA's hard-swish of n floats, in place.");
  m.def(
      "conv_act_qrange",
      [](int act, float out_scale, int out_zp) {
        int32_t lo, hi;
        conv_act_qrange(act, out_scale, out_zp, &lo, &hi);
        return py::make_tuple(lo, hi);
      },
      py::arg("act"), py::arg("out_scale"), py::arg("out_zp"), "The uint8 clamp of an activation on an output grid.");
  m.def(
      "conv_quant_params",
      [](uintptr_t x, int64_t count) {
        float scale = 0.0f;
        int32_t zp = 0;
        bool ok;
        {
          py::gil_scoped_release nogil;
          ok = conv_quant_params(as_ptr<const float>(x), count, &scale, &zp);
        }
        return py::make_tuple(ok, scale, zp);
      },
      py::arg("x"), py::arg("count"), "(finite, scale, zero point) of the dyn path's activation quantization.");
  m.def(
      "conv_quantize_u8",
      [](uintptr_t x, int64_t count, float inv, int32_t zp, uintptr_t q) {
        if (zp < 0 || zp > 255) throw py::value_error("conv_quantize_u8: zero point must be in [0, 255]");
        const ConvQuantInfo* k = select_conv_quant(current_isa_mask());
        {
          py::gil_scoped_release nogil;
          k->quantize(as_ptr<const float>(x), count, inv, zp, as_ptr<uint8_t>(q));
        }
        return std::string(k->name);
      },
      py::arg("x"), py::arg("count"), py::arg("inv"), py::arg("zp"), py::arg("q"));
  m.def(
      "conv_im2col_u8",
      [](uintptr_t q, int64_t q_numel, const std::vector<int64_t>& dims, int64_t img, int64_t g, int32_t zp, int64_t p0,
         int64_t p1, int64_t kp, uintptr_t out, int64_t out_numel) {
        const ConvShape s = make_shape(dims, "conv_im2col_u8");
        const int64_t k = s.kh * s.kw * (s.c / s.groups);
        if (q_numel != s.n * s.h * s.w * s.c || img < 0 || img >= s.n || g < 0 || g >= s.groups || p0 < 0 ||
            p1 < p0 || p1 > s.oh * s.ow || kp < k || out_numel != (p1 - p0) * kp || zp < 0 || zp > 255)
          throw py::value_error("conv_im2col_u8: arguments out of range");
        py::gil_scoped_release nogil;
        conv_im2col_u8(as_ptr<const uint8_t>(q), s, img, g, zp, p0, p1, kp, as_ptr<uint8_t>(out));
      },
      py::arg("q"), py::arg("q_numel"), py::arg("dims"), py::arg("img"), py::arg("g"), py::arg("zp"), py::arg("p0"),
      py::arg("p1"), py::arg("kp"), py::arg("out"), py::arg("out_numel"));

  // --- embed: lookups from q8 / q4 blobs (the lm_head's own blob when tied) ---
  m.def(
      "embed_gather",
      [](const std::string& fmt, uintptr_t blob, size_t size, uintptr_t ids, int64_t n_ids, uintptr_t out,
         int64_t out_numel, int nthreads) {
        int64_t bad;
        if (n_ids < 0) throw py::value_error("embed_gather: negative id count");
        if (fmt == "q8") {
          const Q8View v = q8_view(as_ptr<const uint8_t>(blob), size, false);
          if (out_numel != n_ids * v.k) throw py::value_error("embed_gather: output size does not match");
          py::gil_scoped_release nogil;
          bad = embed_gather_q8(v, as_ptr<const int64_t>(ids), n_ids, as_ptr<float>(out), v.k, nthreads);
        } else if (fmt == "q4") {
          const Q4View v = q4_view(as_ptr<const uint8_t>(blob), size, false);
          if (out_numel != n_ids * v.k) throw py::value_error("embed_gather: output size does not match");
          py::gil_scoped_release nogil;
          bad = embed_gather_q4(v, as_ptr<const int64_t>(ids), n_ids, as_ptr<float>(out), v.k, nthreads);
        } else {
          throw py::value_error("embed_gather: format must be 'q8' or 'q4'");
        }
        return bad;
      },
      py::arg("fmt"), py::arg("blob"), py::arg("size"), py::arg("ids"), py::arg("n_ids"), py::arg("out"),
      py::arg("out_numel"), py::arg("nthreads"),
      "Writes the dequantized rows ids[i] of the blob's weight matrix; returns -1, or the position of the first "
      "id out of range (nothing written).");
}

}  // namespace slimnn
