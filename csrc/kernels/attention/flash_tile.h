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

constexpr int kRows = 4;  // query rows per step: independent FMA chains for short rows (Lk, dv of one vector)

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
  V acc[kRows][2];
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

inline void flash_tile(const AttnTile& t) {
  const int64_t bk = kAttnBlockK;
  const int64_t dvp = round_up_w(t.dv);
  float* kt = t.work;                // [d][bk], the packed K^T of the current block
  float* srow = kt + t.d * bk;       // [kRows][bk] scores, then probabilities, of a group of rows
  float* mrow = srow + kRows * bk;   // [bk] additive form of a boolean mask row
  float* oacc = mrow + bk;           // [mq][dvp] unnormalized outputs between key blocks
  float* mx = oacc + t.mq * dvp;     // [mq] running max
  float* lsum = mx + t.mq;           // [mq] running sum of exp
  const float ninf = -__builtin_inff();
  const float* mask_f = static_cast<const float*>(t.mask);
  const uint8_t* mask_b = static_cast<const uint8_t*>(t.mask);
  const uint8_t* mrow_src = nullptr;  // the boolean row mrow holds (rows often share one: ldm == 0)

  for (int64_t j0 = 0; j0 < t.lk; j0 += bk) {
    const int64_t nb = t.lk - j0 < bk ? t.lk - j0 : bk;
    const int64_t nbp = round_up_w(nb);
    const bool first = j0 == 0, last = j0 + nb == t.lk;
    // Pack K^T for this block; columns [nb, nbp) are zero (their scores are masked to -inf below).
    for (int64_t j = 0; j < nb; ++j) {
      const float* kr = t.k + (j0 + j) * t.ldk;
      for (int64_t e = 0; e < t.d; ++e) kt[e * bk + j] = kr[e];
    }
    for (int64_t e = 0; e < t.d; ++e)
      for (int64_t j = nb; j < nbp; ++j) kt[e * bk + j] = 0.0f;
    mrow_src = nullptr;

    for (int64_t r0 = 0; r0 < t.mq; r0 += kRows) {
      const int nr = int(t.mq - r0 < kRows ? t.mq - r0 : kRows);
      const float* qg = t.q + r0 * t.ldq;
      switch (nr) {
        case 4: rows_scores_all<4>(qg, t.ldq, t.d, kt, bk, nbp, srow, bk); break;
        case 3: rows_scores_all<3>(qg, t.ldq, t.d, kt, bk, nbp, srow, bk); break;
        case 2: rows_scores_all<2>(qg, t.ldq, t.d, kt, bk, nbp, srow, bk); break;
        default: rows_scores_all<1>(qg, t.ldq, t.d, kt, bk, nbp, srow, bk); break;
      }
      RowOut ro[kRows];
      for (int i = 0; i < nr; ++i) {
        const int64_t r = r0 + i;
        float* s = srow + i * bk;
        int64_t valid = nb;  // keys [0, valid) of the block may be attended (causal limit)
        if (t.causal >= 0) {
          const int64_t lim = t.causal + r + 1 - j0;
          valid = lim < 0 ? 0 : (lim < nb ? lim : nb);
        }
        const float* madd = nullptr;  // additive mask for this row's block, or null
        if (t.mask_kind == 2) {
          madd = mask_f + r * t.ldm + j0;
        } else if (t.mask_kind == 1) {
          const uint8_t* src = mask_b + r * t.ldm + j0;
          if (src != mrow_src) {
            for (int64_t j = 0; j < nb; ++j) mrow[j] = src[j] ? 0.0f : ninf;
            mrow_src = src;
          }
          madd = mrow;
        }
        // Scale, mask, max.
        const V vscale = vset1(t.scale);
        V vmx = vset1(ninf);
        for (int64_t c = 0; c < nbp; c += W) {
          V x = vmul(vload(s + c), vscale);
          if (madd) x = vadd(x, vload_n(madd + c, int(nb - c < W ? nb - c : W)));
          x = vfill_from(x, int(valid - c < -1 ? -1 : (valid - c > W ? W : valid - c)), ninf);
          vstore_n(s + c, x, W);
          vmx = vmax(vmx, x);
        }
        const float m_old = first ? ninf : mx[r];
        const float m_blk = hmax(vmx);
        const float m_new = m_blk > m_old ? m_blk : m_old;
        const float m_use = m_new == ninf ? 0.0f : m_new;  // all masked so far: exp(-inf - 0) = 0, no NaN
        const float alpha = first ? 0.0f : exp_scalar(m_old - m_use);
        // Probabilities p = exp(s - max) in place, and their sum.
        const V vm = vset1(m_use);
        V vs = vzero();
        for (int64_t c = 0; c < nbp; c += W) {
          const V p = vexp(vsub(vload(s + c), vm));
          vstore_n(s + c, p, W);
          vs = vadd(vs, p);
        }
        const float l = (first ? 0.0f : lsum[r] * alpha) + hsum(vs);
        mx[r] = m_new;
        lsum[r] = l;
        // Output row: prev * alpha + P V, normalized on the last block. l == 0: every key masked -> zeros.
        ro[i].prev = first ? nullptr : oacc + r * dvp;
        ro[i].alpha = alpha;
        ro[i].dst = last ? t.o + r * t.ldo : oacc + r * dvp;
        ro[i].osc = last ? (l > 0.0f ? 1.0f / l : (l == 0.0f ? 0.0f : l)) : 1.0f;
      }
      const float* vb = t.v + j0 * t.ldv;
      switch (nr) {
        case 4: rows_pv_all<4>(srow, bk, nb, vb, t.ldv, t.dv, ro); break;
        case 3: rows_pv_all<3>(srow, bk, nb, vb, t.ldv, t.dv, ro); break;
        case 2: rows_pv_all<2>(srow, bk, nb, vb, t.ldv, t.dv, ro); break;
        default: rows_pv_all<1>(srow, bk, nb, vb, t.ldv, t.dv, ro); break;
      }
    }
  }
}

inline void exp_array(const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore_n(y + i, vexp(vload(x + i)), W);
  if (i < n) vstore_n(y + i, vexp(vload_n(x + i, int(n - i))), int(n - i));
}
