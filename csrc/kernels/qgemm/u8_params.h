// The scale and zero point of the uint8 activation quantization (QuantizeRowU8, qgemm.h), written once for
// the portable quantizer (ref.cc), the x86 ones (x86_avx2.cc, x86_avx512.cc) and the conv driver's per-image
// and per-tensor ranges (conv.cc). Include inside the including file's own namespace (an ISA file's per-ISA
// namespace: ODR-safe), after <cmath> and <limits>.
// (not a header guard: included once per translation unit, inside a namespace)

// [mn, mx] holds 0 and is finite. scale = mx / 255 - mn / 255, written as two quotients so that a row
// spanning [-FLT_MAX, FLT_MAX] does not overflow; a (near-)zero range gets scale 1 (its values all quantize
// to the zero point). zp = clamp(nearbyint(-mn / scale), 0, 255), rounding in the current mode (nearest,
// ties to even); |-mn / scale| <= 256, so any rounding instruction gives the same integer.
inline void u8_range_params(float mn, float mx, float* scale, int32_t* zp) {
  float s = mx / 255.0f - mn / 255.0f;
  if (!(s >= std::numeric_limits<float>::min())) s = 1.0f;
  float zf = std::nearbyint(-mn * (1.0f / s));
  zf = zf < 0.0f ? 0.0f : (zf > 255.0f ? 255.0f : zf);
  *scale = s;
  *zp = static_cast<int32_t>(zf);
}
