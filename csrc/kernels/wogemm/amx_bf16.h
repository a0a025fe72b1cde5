// The AMX-BF16 weight-only task body (q8 and q4 weights, fp32 activations), written once over the tile
// abstraction (common/simd/x86_amx.h) and compiled twice: x86_amx.cc (real tdpbf16ps) and amx_emu.cc (the
// portable emulation, test-only). Include inside the file's own namespace after x86_amx.h, act.h and
// wogemm.h. Provides run_task(view, task, dequant) and dequant_q8 / dequant_q4 for entries.h; the driver
// (wogemm.cc) is the fp32 path's: same blocking, threads, scratch and activation epilogue.
// (not a header guard: included once per translation unit, inside a namespace)
//
// Per task and K block of kc values (the driver's):
//   1. dequantize the block's weights to fp32 (dequant_scalar.h: the exact q * s or (u - z) * s), then round
//      each to bf16 (nearest even) into tdpbf16ps's B layout: per 16-column panel and 32 K values, one
//      16 x 64-byte tile whose row r holds the pairs (w[k0 + 2r][c], w[k0 + 2r + 1][c]) for c = 0..15.
//      K past the layer's real K is zero;
//   2. per block of up to 32 rows: the rows' activations rounded to bf16, row-major, K zero-padded to 32;
//   3. per pair of panels (32 columns): 2 x 2 fp32 accumulator tiles (rows 0-15 / 16-31 x panels), A tiles
//      4 and 5, B tiles 6 and 7 (the W8A8 kernel's 2-2-4 pattern); tile config per call for its rows (M
//      tail), ldtilecfg / tilerelease around every 32 x 32 block (no tile state survives a call);
//   4. fp32 epilogue: C stored to a 32 x 32 buffer, added to y (K blocks after the first), bias at the last K
//      block, the fused activation on the rows of the block (as panel_impl.h does).
// Accuracy: each weight and activation rounded to bf16 (8 significand bits, relative error <= 2^-9), products
// exact, sums in fp32 (docs/amx.md has the measured error against the fp32 path).

constexpr int kMR = 32, kNR = 32;
constexpr int kKStep = 32;  // K values per tdpbf16ps (16 bf16 pairs = 64 bytes per A row)

#include "kernels/wogemm/dequant_scalar.h"

// fp32 -> bf16, round to nearest even; NaN stays a (quiet) NaN, infinities stay infinite.
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Per-thread bf16 scratch (the driver's fp32 scratch holds the fp32 panel): slot 0 B panels, 1 A rows.
inline uint16_t* bf16_scratch(int slot, int64_t count) {
  thread_local std::vector<uint16_t> buf[2];
  if (static_cast<int64_t>(buf[slot].size()) < count) buf[slot].resize(static_cast<size_t>(count));
  return buf[slot].data();
}

// fp32 panels [p][kk][16] (kc_w values) -> bf16 tiles [p][kb][16 rows][32]: K values >= kc_x are zero.
inline void to_vnni(const float* f, int64_t panels, int64_t kc_w, int64_t kc_x, int64_t nkb, uint16_t* out) {
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t kk = 0; kk < nkb * kKStep; ++kk) {
      uint16_t* row = out + (p * nkb + kk / kKStep) * 16 * 32 + ((kk % kKStep) / 2) * 32 + kk % 2;
      const float* src = f + p * kc_w * 16 + kk * 16;
      for (int c = 0; c < 16; ++c) row[2 * c] = kk < kc_x ? to_bf16(src[c]) : uint16_t{0};
    }
}

// c[32][32] = A (mr rows, nkb steps, row stride lda elements) . B (np2 panels of nkb tiles). mr in 1..32.
inline void block(int mr, int np2, int64_t nkb, const uint16_t* a, int64_t lda, const uint16_t* b, float* c) {
  const int r0 = std::min(mr, 16), r1 = mr - r0;
  TileConfig cfg = tile_config();
  set_tile(cfg, 0, r0, 64);
  set_tile(cfg, 4, r0, 64);
  set_tile(cfg, 6, 16, 64);
  if (np2 > 1) {
    set_tile(cfg, 1, r0, 64);
    set_tile(cfg, 7, 16, 64);
  }
  if (r1 > 0) {
    set_tile(cfg, 2, r1, 64);
    set_tile(cfg, 5, r1, 64);
    if (np2 > 1) set_tile(cfg, 3, r1, 64);
  }
  Tiles t;
  t.configure(cfg);
  t.zero<0>();
  if (np2 > 1) t.zero<1>();
  if (r1 > 0) t.zero<2>();
  if (r1 > 0 && np2 > 1) t.zero<3>();
  const int64_t sa = lda * 2, tile_elems = 16 * 32;
  for (int64_t kb = 0; kb < nkb; ++kb) {
    t.load<4>(a + kb * kKStep, sa);
    t.load<6>(b + kb * tile_elems, 64);
    if (np2 > 1) t.load<7>(b + (nkb + kb) * tile_elems, 64);
    t.dpbf16ps<0, 4, 6>();
    if (np2 > 1) t.dpbf16ps<1, 4, 7>();
    if (r1 > 0) {
      t.load<5>(a + 16 * lda + kb * kKStep, sa);
      t.dpbf16ps<2, 5, 6>();
      if (np2 > 1) t.dpbf16ps<3, 5, 7>();
    }
  }
  t.store<0>(c, 32 * 4);
  if (np2 > 1) t.store<1>(c + 16, 32 * 4);
  if (r1 > 0) t.store<2>(c + 16 * 32, 32 * 4);
  if (r1 > 0 && np2 > 1) t.store<3>(c + 16 * 32 + 16, 32 * 4);
  t.release();
}

template <typename View, typename Dequant>
void run_task(const View& w, const WoPanelTask& t, Dequant dequant) {
  alignas(64) float cbuf[kMR * kNR];
  for (int64_t k0 = 0; k0 < w.k; k0 += t.kc) {
    const int64_t kc_w = std::min(t.kc, w.kp - k0);  // weights dequantized (padded K included)
    const int64_t kc_x = std::min(t.kc, w.k - k0);   // activations read (real K only)
    const int64_t nkb = (kc_x + kKStep - 1) / kKStep, kcp = nkb * kKStep;
    const bool first = k0 == 0, last = k0 + t.kc >= w.k;
    dequant(w, t.p0, t.panels, k0, kc_w, t.panel);
    uint16_t* bp = bf16_scratch(0, t.panels * nkb * 16 * 32);
    to_vnni(t.panel, t.panels, kc_w, kc_x, nkb, bp);
    uint16_t* ap = bf16_scratch(1, kMR * kcp);
    for (int64_t r = 0; r < t.m; r += kMR) {
      const int mr = static_cast<int>(std::min<int64_t>(kMR, t.m - r));
      for (int i = 0; i < mr; ++i) {
        const float* src = t.x + (r + i) * t.ldx + k0;
        for (int64_t kk = 0; kk < kcp; ++kk) ap[i * kcp + kk] = kk < kc_x ? to_bf16(src[kk]) : uint16_t{0};
      }
      float* yr = t.y + r * t.ldy;
      for (int64_t p = 0; p < t.panels; p += 2) {
        const int64_t c0 = p * 16;
        if (c0 >= t.ncols) break;
        const int np2 = static_cast<int>(std::min<int64_t>(2, t.panels - p));
        const int nc = static_cast<int>(std::min<int64_t>(kNR, t.ncols - c0));
        block(mr, np2, nkb, ap, kcp, bp + p * nkb * 16 * 32, cbuf);
        const float* bias = last && t.bias ? t.bias + c0 : nullptr;
        for (int i = 0; i < mr; ++i) {
          float* yc = yr + i * t.ldy + c0;
          for (int j = 0; j < nc; ++j) {
            float v = cbuf[i * kNR + j];
            if (!first) v += yc[j];
            if (bias) v += bias[j];
            yc[j] = v;
          }
        }
      }
      if (last) apply_activation(t.ak, t.act, yr, mr, t.ncols, t.ldy);
    }
  }
}
