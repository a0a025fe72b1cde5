// conv: 2-D convolution over channels-last (NHWC) fp32 activations with int8 weights (Conv1d is the H = 1
// case). Three paths, chosen by shape:
//  - dense (groups = 1 or general groups, any kh x kw, stride, padding, dilation; 1x1 included): an implicit
//    GEMM on the q8 micro-kernels of kernels/qgemm. Each task builds a block of im2col rows (kh*kw*cin/groups
//    bytes each, in (ky, kx, c) order) for its output pixels in L2 and runs the micro-kernel over all output
//    channels of its group. A 1x1, stride 1, unpadded conv whose channel count is a multiple of 4 skips the
//    copy: the activations are already the GEMM's rows.
//      dyn (W8A8): the activations are quantized to uint8 with one (scale, zero point) per image or per tensor,
//      measured on each call (same formula as quantize_row_u8, the range always containing 0); padded taps read
//      the zero point, i.e. exactly 0.0. Integer part exact:
//        y[p][o] = a_scale * w_scale[o] * sum_{taps, c} (q[tap][c] - zp) * w[o][tap][c] + bias[o]
//      wo (weight-only): fp32 im2col rows (padding 0.0), q8 weight-only micro-kernel.
//  - depthwise (groups = cin = cout): its own kernels (kernels.inc), fp32 activations times int8 weights
//    expanded to fp32 (C * kh * kw values: per call by conv2d_dw, once per module by conv2d_dw_prepared),
//    accumulated in fp32 lanes over channels. Used for both modes: the op does only kh*kw multiply-adds per
//    input element, so quantizing the input would cost as much as the convolution and win nothing; on the
//    static path (below) the input may already be uint8, read and dequantized in registers. Fast paths for 3x3 and 5x5 (dilation 1, any stride) on interior
//    pixels; a general path (any k, stride, dilation, padding) for the rest.
// Every path then adds the bias and applies the activation (codes of kernels/act/act.h, plus kRelu6 and
// kHardSwish below) to each block of outputs while it is in cache. Output is NHWC fp32.
#pragma once
#include <cstdint>

#include "formats/q8.h"
#include "kernels/qgemm/qgemm.h"

namespace slimnn {

// Activation codes beyond kernels/act/act.h's (0 none, 1 relu, 2 gelu, 3 gelu_tanh, 4 silu). They cross the
// Python boundary: keep them.
enum : int {
  kConvActRelu6 = 5,      // min(max(x, 0), 6)
  kConvActHardSwish = 6,  // x * min(max(x + 3, 0), 6) / 6
};
constexpr int kConvNumActivations = 7;

// Quantization scope of the dyn path: one (scale, zero point) for the whole batch, one per image, or one per
// GEMM row (kConvQuantPerPixel: each output pixel's receptive field, i.e. its im2col row of kh*kw*c/groups
// values, padding taps included as 0.0, quantized on its own with the row quantizer of the micro-kernel's ISA,
// quantize_row_u8; for a 1x1 conv that is the input pixel's channel vector). Per pixel needs no pass over the
// whole image: each task quantizes its block of rows while it is in cache, right before its GEMM.
enum : int { kConvQuantPerTensor = 0, kConvQuantPerImage = 1, kConvQuantPerPixel = 2 };

struct ConvShape {
  int64_t n, h, w, c;          // input, NHWC
  int64_t oc;                  // output channels
  int64_t kh, kw, sh, sw;
  int64_t ph, pw;              // padding before (top, left): output pixel (0, 0) starts at (-ph, -pw)
  int64_t ph1, pw1;            // padding after (bottom, right): only the output size depends on them
  int64_t dh, dw, groups;
  int64_t oh, ow;              // output size: conv_out_size(h, kh, sh, ph + ph1, dh), likewise for w
};

// floor((in + pads - dil (k - 1) - 1) / stride) + 1 (pads: both sides together), or 0 when the window does
// not fit.
int64_t conv_out_size(int64_t in, int64_t k, int64_t stride, int64_t pads, int64_t dil);

// --- depthwise micro-kernels -------------------------------------------------------------------------------
// One output row segment: outputs y[ox][c] for ox in [ox0, ox1), all c < C, of output row oy of one image.
// x: the image (h x w x C, channel stride C). wf: fp32 weights [kh*kw][cp] (cp = C rounded up to 16, zero
// tail). bias: [cp] (zeros when the conv has none). Every tap of every pixel in [ox0, ox1) must lie inside
// the image for the fixed-size kernels (3x3, 5x5); the general kernel bounds-checks each tap (padding = 0).
// Reads exactly C floats per input pixel, writes exactly C floats per output pixel.
struct DwArgs {
  const float* x;              // fp32 input, or (when xq is set) unused
  const uint8_t* xq;           // static path: uint8 input, real value = (q - zp) * xs = q * xs - xzs; or null
  float xs, xzs;
  const float* wf;
  const float* bias;
  float* y;                    // output row oy, first pixel (ox = 0)
  int64_t h, w, c, cp;
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t oy;
  float lo, hi;                // fused clamp of every output: min(hi, max(lo, y)); -inf, +inf for none
};
using DwUkernel = void (*)(const DwArgs& a, int64_t ox0, int64_t ox1);

enum class DwKind : int { kGeneral = 0, k3x3 = 1, k5x5 = 2 };

struct DwKernelInfo {
  DwKind kind;
  uint32_t isa;  // single ISA bit
  const char* name;
  DwUkernel fn;
};

// All depthwise kernels of the build, best first within each kind (kernels.inc).
const DwKernelInfo* conv_dw_kernel_table(int* count);
// First entry of `kind` whose ISA is in isa_mask; never null (portable kernels are always built).
const DwKernelInfo* select_conv_dw(DwKind kind, uint32_t isa_mask);

// --- activation quantization (dyn path) ---------------------------------------------------------------------
// minmax: running min and max of x[0..n) folded into *mn, *mx (callers start them at 0, so the range holds 0);
// returns false if any value is NaN or infinite. quantize: q[i] = clamp(rint(x[i] * inv) + zp, 0, 255), the
// product rounded once to fp32 and then to the nearest integer, ties to even (the default MXCSR mode), so
// every ISA gives the same bytes.
using ConvMinMax = bool (*)(const float* x, int64_t n, float* mn, float* mx);
using ConvQuantizeU8 = void (*)(const float* x, int64_t n, float inv, int32_t zp, uint8_t* q);
// clamp: y[i] = min(hi, max(lo, y[i])) in place for i < n, NaN kept (the dense path's ReLU6 epilogue).
using ConvClamp = void (*)(float* y, int64_t n, float lo, float hi);
// requant (static path): q[i] = rint(min(max(x[i] * inv, lo - zp), hi - zp)) + zp, i.e. the quantize formula
// clamped to [lo, hi] (0 <= lo <= hi <= 255) in float before the conversion (a NaN product gives lo); returns
// false if some x[i] is not finite. A ReLU / ReLU6 before it is the clamp [q(0), q(6)] (rint is monotone).
using ConvRequantU8 = bool (*)(const float* x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi, uint8_t* q);
// hardswish: y = y * min(max(y + 3, 0), 6) / 6 in place, torch's operation order on every lane.
using ConvHardSwish = void (*)(float* y, int64_t n);
struct ConvQuantInfo {  // the ISA's elementwise helpers of the conv drivers
  uint32_t isa;
  const char* name;
  ConvMinMax minmax;
  ConvQuantizeU8 quantize;
  ConvClamp clamp;
  ConvRequantU8 requant;
  ConvHardSwish hardswish;
};
const ConvQuantInfo* conv_quant_table(int* count);
const ConvQuantInfo* select_conv_quant(uint32_t isa_mask);

// --- ops (threaded drivers) ----------------------------------------------------------------------------------
// Dense/pointwise: w holds s.groups views, group g producing output channels [g*oc/g, (g+1)*oc/g) from input
// channels [g*c/g, (g+1)*c/g); each view is N = oc/groups by K = kh*kw*c/groups, K in (ky, kx, c) order.
// x: NHWC fp32, y: NHWC fp32 (n*oh*ow*oc). bias may be null. A non-finite value in an image (per image), in
// the batch (per tensor) or in a pixel's receptive field (per pixel) makes that image's (the batch's, that
// pixel's group of output channels) output NaN on the dyn path. Returns the
// micro-kernel used.
const KernelInfo* conv2d_q8(KernelKind kind, const float* x, const ConvShape& s, const Q8View* w, const float* bias,
                            int act, int quant, float* y, int nthreads, uint32_t isa_mask);

// Depthwise: wq int8 [C][kh*kw] (torch's layout of a (C, 1, kh, kw) weight), scales [C] (one per channel).
// Returns the kernel used for interior pixels.
const DwKernelInfo* conv2d_dw(const float* x, const ConvShape& s, const int8_t* wq, const float* scales,
                              const float* bias, int act, float* y, int nthreads, uint32_t isa_mask);

// --- static (calibrated) activation quantization -------------------------------------------------------------
// The dyn path with the input's (scale, zero point) fixed at calibration instead of measured per call, and
// optionally a uint8 output requantized with the next conv's input parameters, so a chain of convs passes
// uint8 tensors (4x fewer bytes than fp32, and no quantization pass at each conv's input).
//   input: xq (uint8 NHWC, real value (q - in_zp) * in_scale) or, when xq is null, the fp32 x quantized
//          with (in_scale, in_zp) by requant (clamped to [0, 255]); padded taps read in_zp (0.0).
//   output: yq (uint8 NHWC) = requant(y, 1 / out_scale, out_zp) with a ReLU / ReLU6 epilogue folded into
//          the clamp and any other activation applied to the fp32 block first; or, when yq is null, fp32 y.
// The integer part is the dyn path's, exact. finite (out, may be null): false when the fp32 input held a NaN
// or an infinity; then fp32 outputs of that image are NaN and uint8 outputs undefined (the caller raises).
struct ConvStaticIO {
  const uint8_t* xq;
  float in_scale;
  int32_t in_zp;
  uint8_t* yq;
  float out_scale;
  int32_t out_zp;
};
// The uint8 clamp of a conv activation on the output grid (act: none, relu or relu6; others: [0, 255]).
void conv_act_qrange(int act, float out_scale, int32_t out_zp, int32_t* lo, int32_t* hi);
const KernelInfo* conv2d_q8_static(const float* x, const ConvShape& s, const Q8View* w, const float* bias, int act,
                                   const ConvStaticIO& io, float* y, bool* finite, int nthreads, uint32_t isa_mask);
// Depthwise with its weights prepared once (wf fp32 [kh*kw][cp], cp = C rounded up to 16, zero tail:
// wf[t][c] = float(wq[c][t]) * scales[c], the product conv2d_dw forms per call; bias [cp], zero tail) and,
// when io is non-null, static uint8 input and/or output as above. io null: conv2d_dw's exact computation.
// finite (out, may be null): false when a uint8 output was not finite before requantization (a NaN or an
// infinity in an fp32 input that reached an output); those bytes are undefined (the caller raises).
const DwKernelInfo* conv2d_dw_prepared(const float* x, const ConvShape& s, const float* wf, const float* bias_p,
                                       int act, const ConvStaticIO* io, float* y, bool* finite, int nthreads,
                                       uint32_t isa_mask);

// Test hooks. The dyn path's activation quantization of one image (or of the batch): scale and zero point
// from the range of x[0..count) (containing 0), then q = clamp(rint(x / scale) + zp, 0, 255) with the same
// multiply-by-reciprocal and round-to-nearest-even as quantize_row_u8. Returns false on a non-finite value.
bool conv_quant_params(const float* x, int64_t count, float* scale, int32_t* zp);
// The im2col rows the dense path builds for output pixels [p0, p1) of image `img`, group `g`: (p1 - p0) rows
// of kp bytes from the uint8 NHWC tensor q (padding = zp, [K, kp) = 0).
void conv_im2col_u8(const uint8_t* q, const ConvShape& s, int64_t img, int64_t g, int32_t zp, int64_t p0,
                    int64_t p1, int64_t kp, uint8_t* out);

// Applies a conv activation code to rows x cols floats (row stride ld) in place.
void conv_apply_act(int act, float* y, int64_t rows, int64_t cols, int64_t ld, uint32_t isa_mask);

}  // namespace slimnn
