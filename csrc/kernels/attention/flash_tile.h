// The tile kernel body, written once over a small vector interface and included by each ISA file inside its
// own namespace (so every copy is compiled with that file's flags only; no ODR clash). Before including, the
// file defines:
//   V, W (fp32 lanes), vzero(), vset1(f), vload(p), vload_n(p, n) (lanes >= n zero, reads n floats),
//   vstore_n(p, x, n), vfma(a, b, c) = a * b + c, vmul, vadd, vsub, vmax, vfill_from(x, n, f) (lanes >= n set
//   to f; n may be <= 0 or >= W), hmax(x), hsum(x), vexp(x).
// Algorithm per tile (see attention.h): for each key block, pack K^T (d x block, zero-padded to W), then per
// query row: scores by broadcast-FMA over d, mask, online-softmax update, and the P V product into the row's
// accumulator (registers, then the output row on the last block or the tile's scratch otherwise).

inline int64_t round_up_w(int64_t x) { return (x + W - 1) / W * W; }

#ifndef SLIMNN_ATTN_HAVE_PACK_KT
// kt[e][j] = k[j][e] for j < nb, e < d; columns [nb, round_up_w(nb)) zero (their scores are masked to -inf).
inline void pack_kt(const float* k, int64_t ldk, int64_t nb, int64_t d, float* kt, int64_t ldkt) {
  for (int64_t j = 0; j < nb; ++j) {
    const float* kr = k + j * ldk;
    for (int64_t e = 0; e < d; ++e) kt[e * ldkt + j] = kr[e];
  }
  for (int64_t e = 0; e < d; ++e)
    for (int64_t j = nb; j < round_up_w(nb); ++j) kt[e * ldkt + j] = 0.0f;
}
#endif

#ifndef SLIMNN_ATTN_ROWS
#define SLIMNN_ATTN_ROWS 4
#endif
// Query rows per step: independent FMA chains for short rows (Lk, dv of one vector). At most kAttnMaxRows.
constexpr int kRows = SLIMNN_ATTN_ROWS;
static_assert(kRows <= kAttnMaxRows, "the work space holds kAttnMaxRows score rows");

// Scores of NR query rows for key columns [c, c + NC * W) of the packed block:
// acc[i][u] = sum_e q_i[e] kt[e][c + u W ...], e in order.
template <int NR, int NC>
inline void rows_scores(const float* q, int64_t ldq, int64_t d, const float* kt, int64_t ldkt, int64_t c,
                        V (*acc)[2]) {
  for (int i = 0; i < NR; ++i)
    for (int u = 0; u < NC; ++u) acc[i][u] = vzero();
  for (int64_t e = 0; e < d; ++e) {
    V kv[NC];
    for (int u = 0; u < NC; ++u) kv[u] = vload(kt + e * ldkt + c + u * W);
    for (int i = 0; i < NR; ++i) {
      const V qb = vset1(q[i * ldq + e]);
      for (int u = 0; u < NC; ++u) acc[i][u] = vfma(qb, kv[u], acc[i][u]);
    }
  }
}

// Per row i < NR: acc = prev_i * alpha_i (prev_i null: zero) + sum_{j < nb} p_i[j] v[j][c0 ...] over output
// columns [c0, c0 + ncols) (ncols <= NU * W), then dst_i = acc * osc_i.
struct RowOut {
  const float* prev;
  float alpha;
  float* dst;
  float osc;
};

template <int NR, int NU>
inline void rows_pv(const float* p, int64_t ldp, int64_t nb, const float* v, int64_t ldv, int64_t c0,
                    int64_t ncols, const RowOut* ro) {
  V acc[NR][NU];
  int cnt[NU];
  for (int u = 0; u < NU; ++u) cnt[u] = int(ncols - u * W < W ? ncols - u * W : W);
  for (int i = 0; i < NR; ++i)
    for (int u = 0; u < NU; ++u)
      acc[i][u] = ro[i].prev ? vmul(vload_n(ro[i].prev + c0 + u * W, cnt[u]), vset1(ro[i].alpha)) : vzero();
  if (ncols == NU * W) {
    for (int64_t j = 0; j < nb; ++j) {
      V vv[NU];
      for (int u = 0; u < NU; ++u) vv[u] = vload(v + j * ldv + c0 + u * W);
      for (int i = 0; i < NR; ++i) {
        const V pb = vset1(p[i * ldp + j]);
        for (int u = 0; u < NU; ++u) acc[i][u] = vfma(pb, vv[u], acc[i][u]);
      }
    }
  } else {
    for (int64_t j = 0; j < nb; ++j) {
      V vv[NU];
      for (int u = 0; u < NU; ++u) vv[u] = vload_n(v + j * ldv + c0 + u * W, cnt[u]);
      for (int i = 0; i < NR; ++i) {
        const V pb = vset1(p[i * ldp + j]);
        for (int u = 0; u < NU; ++u) acc[i][u] = vfma(pb, vv[u], acc[i][u]);
      }
    }
  }
  for (int i = 0; i < NR; ++i) {
    const V sc = vset1(ro[i].osc);
    for (int u = 0; u < NU; ++u) vstore_n(ro[i].dst + c0 + u * W, vmul(acc[i][u], sc), cnt[u]);
  }
}

template <int NR>
inline void rows_pv_all(const float* p, int64_t ldp, int64_t nb, const float* v, int64_t ldv, int64_t dv,
                        const RowOut* ro) {
  for (int64_t c0 = 0; c0 < dv; c0 += 2 * W) {
    const int64_t ncols = dv - c0 < 2 * W ? dv - c0 : 2 * W;
    if (ncols > W)
      rows_pv<NR, 2>(p, ldp, nb, v, ldv, c0, ncols, ro);
    else
      rows_pv<NR, 1>(p, ldp, nb, v, ldv, c0, ncols, ro);
  }
}

template <int NR>
inline void rows_scores_all(const float* q, int64_t ldq, int64_t d, const float* kt, int64_t ldkt, int64_t nbp,
                            float* s, int64_t lds) {
  V acc[NR][2];
  for (int64_t c = 0; c < nbp;) {
    int nc = 1;
    if (nbp - c >= 2 * W) {
      rows_scores<NR, 2>(q, ldq, d, kt, ldkt, c, acc);
      nc = 2;
    } else {
      rows_scores<NR, 1>(q, ldq, d, kt, ldkt, c, acc);
    }
    for (int i = 0; i < NR; ++i)
      for (int u = 0; u < nc; ++u) vstore_n(s + i * lds + c + u * W, acc[i][u], W);
    c += nc * W;
  }
}

inline float exp_scalar(float x) {
  float y[W];
  const V r = vexp(vset1(x));
  vstore_n(y, r, W);
  return y[0];
}

// State of one tile while it walks the key blocks.
struct TileState {
  float* kt;    // [d][kAttnKtStride], the packed K^T of the current block
  float* srow;  // [kRows][kAttnBlockK] scores, then probabilities, of a group of rows
  float* mrow;  // [kAttnBlockK] additive form of a boolean mask row
  float* oacc;  // [mq][dvp] unnormalized outputs between key blocks
  float* mx;    // [mq] running max
  float* lsum;  // [mq] running sum of exp
  int64_t dvp, j0, nb, nbp;
  bool first, last;
  const uint8_t* mrow_src;  // the boolean row mrow holds (rows often share one: ldm == 0)
};

// Rows [r0, r0 + NR) of the tile against the current key block: scores, mask, online softmax, P V.
// The rows' softmax steps are written phase by phase over all NR rows (not row after row), so the long
// dependency chains of the horizontal reductions and exps of different rows overlap.
template <int NR>
inline void rows_step(const AttnTile& t, TileState& st, int64_t r0) {
  const int64_t bk = kAttnBlockK;
  const float ninf = -__builtin_inff();
  rows_scores_all<NR>(t.q + r0 * t.ldq, t.ldq, t.d, st.kt, kAttnKtStride, st.nbp, st.srow, bk);
  const float* madd[NR];
  int64_t valid[NR];
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    const int64_t r = r0 + i;
    valid[i] = st.nb;  // keys [0, valid) of the block may be attended (causal limit)
    if (t.causal >= 0) {
      const int64_t lim = t.causal + r + 1 - st.j0;
      valid[i] = lim < 0 ? 0 : (lim < st.nb ? lim : st.nb);
    }
    madd[i] = t.mask_kind == 2 ? static_cast<const float*>(t.mask) + r * t.ldm + st.j0 : nullptr;
  }
  // Scale, mask, running max.
  const V vscale = vset1(t.scale);
  V vmx[NR];
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    float* s = st.srow + i * bk;
    vmx[i] = vset1(ninf);
    // A boolean row is converted to its additive form once and reused while rows share it (ldm == 0).
    const uint8_t* bsrc = t.mask_kind == 1 ? static_cast<const uint8_t*>(t.mask) + (r0 + i) * t.ldm + st.j0 : nullptr;
    if (bsrc && bsrc != st.mrow_src) {
      for (int64_t j = 0; j < st.nb; ++j) st.mrow[j] = bsrc[j] ? 0.0f : ninf;
      st.mrow_src = bsrc;
    }
    const float* ma = bsrc ? st.mrow : madd[i];
    for (int64_t c = 0; c < st.nbp; c += W) {
      V x = vmul(vload(s + c), vscale);
      if (ma) x = vadd(x, vload_n(ma + c, int(st.nb - c < W ? st.nb - c : W)));
      const int64_t n = valid[i] - c;
      x = vfill_from(x, int(n < -1 ? -1 : (n > W ? W : n)), ninf);
      vstore_n(s + c, x, W);
      vmx[i] = vmax(vmx[i], x);
    }
  }
  float m_old[NR], m_use[NR], alpha[NR];
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    m_old[i] = st.first ? ninf : st.mx[r0 + i];
    const float m_blk = hmax(vmx[i]);
    const float m_new = m_blk > m_old[i] ? m_blk : m_old[i];
    st.mx[r0 + i] = m_new;
    m_use[i] = m_new == ninf ? 0.0f : m_new;  // all masked so far: exp(-inf - 0) = 0, no NaN
  }
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) alpha[i] = st.first ? 0.0f : exp_scalar(m_old[i] - m_use[i]);
  // Probabilities p = exp(s - max) in place, and their sums.
  V vs[NR];
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) vs[i] = vzero();
  for (int64_t c = 0; c < st.nbp; c += W) {
    #pragma GCC unroll 8
    for (int i = 0; i < NR; ++i) {
      float* s = st.srow + i * bk;
      const V p = vexp(vsub(vload(s + c), vset1(m_use[i])));
      vstore_n(s + c, p, W);
      vs[i] = vadd(vs[i], p);
    }
  }
  RowOut ro[NR];
  #pragma GCC unroll 8
  for (int i = 0; i < NR; ++i) {
    const int64_t r = r0 + i;
    const float l = (st.first ? 0.0f : st.lsum[r] * alpha[i]) + hsum(vs[i]);
    st.lsum[r] = l;
    // Output row: prev * alpha + P V, normalized on the last block. l == 0: every key masked -> zeros.
    ro[i].prev = st.first ? nullptr : st.oacc + r * st.dvp;
    ro[i].alpha = alpha[i];
    ro[i].dst = st.last ? t.o + r * t.ldo : st.oacc + r * st.dvp;
    ro[i].osc = st.last ? (l > 0.0f ? 1.0f / l : (l == 0.0f ? 0.0f : l)) : 1.0f;
  }
  rows_pv_all<NR>(st.srow, bk, st.nb, t.v + st.j0 * t.ldv, t.ldv, t.dv, ro);
}

inline void flash_tile(const AttnTile& t) {
  const int64_t bk = kAttnBlockK;
  TileState st;
  st.dvp = round_up_w(t.dv);
  st.kt = t.work;
  st.srow = st.kt + t.d * kAttnKtStride;
  st.mrow = st.srow + kRows * bk;
  st.oacc = st.mrow + bk;
  st.mx = st.oacc + t.mq * st.dvp;
  st.lsum = st.mx + t.mq;
  // Causal: keys past the last row's limit are masked for every row of the tile; never visit them.
  const int64_t lk = t.causal >= 0 && t.causal + t.mq < t.lk ? t.causal + t.mq : t.lk;
  for (st.j0 = 0; st.j0 < lk; st.j0 += bk) {
    st.nb = lk - st.j0 < bk ? lk - st.j0 : bk;
    st.nbp = round_up_w(st.nb);
    st.first = st.j0 == 0;
    st.last = st.j0 + st.nb == lk;
    st.mrow_src = nullptr;
    pack_kt(t.k + st.j0 * t.ldk, t.ldk, st.nb, t.d, st.kt, kAttnKtStride);
    int64_t r0 = 0;
    for (; r0 + kRows <= t.mq; r0 += kRows) rows_step<kRows>(t, st, r0);
    switch (t.mq - r0) {
      case 7: rows_step<kRows < 8 ? 1 : 7>(t, st, r0); break;
      case 6: rows_step<kRows < 7 ? 1 : 6>(t, st, r0); break;
      case 5: rows_step<kRows < 6 ? 1 : 5>(t, st, r0); break;
      case 4: rows_step<kRows < 5 ? 1 : 4>(t, st, r0); break;
      case 3: rows_step<3>(t, st, r0); break;
      case 2: rows_step<2>(t, st, r0); break;
      case 1: rows_step<1>(t, st, r0); break;
      default: break;
    }
  }
}

inline void exp_array(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore_n(y + i, vexp(vload(x + i)), W);
  if (i < n) vstore_n(y + i, vexp(vload_n(x + i, int(n - i))), int(n - i));
}
