// Scalar dequantization of q8 / q4 weights into 16-column fp32 micro-panels, out[p * kc * 16 + kk * 16 + c]
// for panels [p0, p0 + panels) and K values [k0, k0 + kc): W_deq = q * scale (q8) or (u - z) * scale (q4),
// the reference's exact fp32 numbers. The portable wogemm kernels (kNR = 16) use it as their dequantizer and
// the AMX-BF16 body (amx_bf16.h) as its first step before rounding to bf16 pairs. Portable C++.
// (not a header guard: included once per translation unit, inside a namespace)

void dequant_q8(const Q8View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < panels; ++p) {
    const int8_t* src = w.w + (p0 + p) * 16 * w.kp;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t k = k0 + kk, g = w.n_groups == 1 ? 0 : k / w.group_size;
      for (int c = 0; c < 16; ++c)
        out[p * kc * 16 + kk * 16 + c] =
            float(src[(k / 4) * 64 + c * 4 + k % 4]) * w.scales[g * w.np + (p0 + p) * 16 + c];
    }
  }
}

void dequant_q4(const Q4View& w, int64_t p0, int64_t panels, int64_t k0, int64_t kc, float* out) {
  for (int64_t p = 0; p < panels; ++p) {
    const uint8_t* src = w.w + (p0 + p) * 8 * w.kp;
    for (int64_t kk = 0; kk < kc; ++kk) {
      const int64_t k = k0 + kk, g = w.n_groups == 1 ? 0 : k / w.group_size;
      const int64_t sz = q4_sz_index(g, (p0 + p) * 16, w.n_groups);
      const int j = int(k % 8);
      for (int c = 0; c < 16; ++c) {
        const uint8_t byte = src[(k / 8) * 64 + c * 4 + j % 4];
        const int u = j < 4 ? (byte & 15) : (byte >> 4);
        const int z = w.zeros ? w.zeros[sz + c] : 8;
        out[p * kc * 16 + kk * 16 + c] = float(u - z) * q4_scale_to_f32(w.scales, w.scale_dtype, sz + c);
      }
    }
  }
}

