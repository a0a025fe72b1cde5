// GEMV (M = 1) kernels shared by the AVX2 and AVX-512 files (csr, and nm with 8 values per 16 columns):
// each file includes this inside its own ISA namespace, so the two instantiations never meet (ODR-safe).
// AVX2 + FMA instructions only: on Zen 4 the 8-wide forms measured as fast as or faster than 16-wide ones.
//
// csr:
// Why scalar cursors: a slice's 8 column cursors live in general registers and every activation x[col] is
// fetched by its own scalar load into a vector (vmovss/vinsertps). On Zen 4 this runs 1.7 entries per cycle
// against 1.0 for vgatherdps (16- or 8-wide), which is microcoded there. The loop is bound by integer ops
// and loads together, so the deltas are split between byte loads and shifts. The cursors can only grow
// by 8 * max_delta between two clamps (kClampSlots), the zero padding the driver puts after x
// (xpad_slots = 8 in kernels.inc).
// Measured on an AMD EPYC (Zen 4) with stand-alone prototypes (4096 x 4096, 90%: scalar cursors 4.4
// nonzeros/ns, vgatherdps zmm 2.6, ymm 2.8); not measured on Intel cores, where gathers are cheaper.
// (not a header guard: included once per ISA translation unit, inside a namespace)

constexpr int kClampSlots = 8;

template <typename V>
inline __m256 csr_load8(const V* p);
template <>
inline __m256 csr_load8<float>(const float* p) {
  return _mm256_loadu_ps(p);
}
template <>
inline __m256 csr_load8<int8_t>(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

template <int BITS, typename V>
void csr_gemv(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  constexpr uint64_t M = (uint64_t{1} << BITS) - 1;
  const uint64_t kmax = static_cast<uint64_t>(w.k - 1);
  const uint64_t n = static_cast<uint64_t>(w.n);
  for (int64_t g = u0; g < u1; ++g) {
    const int64_t j0 = w.ptr[g], j1 = w.ptr[g + 1];
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
    __m256 acc = _mm256_setzero_ps();
    alignas(32) float xs[8];
    const uint8_t* dp = w.deltas + j0 * BITS;  // BITS bytes hold one slot's 8 deltas
    const V* vp = static_cast<const V*>(w.values) + j0 * kSellLanes;
    for (int64_t j = j0; j < j1;) {
      const int64_t jend = j1 - j < kClampSlots ? j1 : j + kClampSlots;
      for (; j < jend; ++j, dp += BITS, vp += kSellLanes) {
        // Deltas: half by byte loads (load ports), half by shifts (ALUs): neither kind of port saturates.
        if (BITS == 8) {
          uint32_t hi;
          std::memcpy(&hi, dp + 4, 4);
          c0 += dp[0];
          c1 += dp[1];
          c2 += dp[2];
          c3 += dp[3];
          c4 += hi & M;
          c5 += (hi >> 8) & M;
          c6 += (hi >> 16) & M;
          c7 += hi >> 24;
        } else {
          const uint32_t b0 = dp[0], b1 = dp[1], b2 = dp[2], b3 = dp[3];
          c0 += b0 & M;
          c1 += b0 >> 4;
          c2 += b1 & M;
          c3 += b1 >> 4;
          c4 += b2 & M;
          c5 += b2 >> 4;
          c6 += b3 & M;
          c7 += b3 >> 4;
        }
        xs[0] = x[c0];
        xs[1] = x[c1];
        xs[2] = x[c2];
        xs[3] = x[c3];
        xs[4] = x[c4];
        xs[5] = x[c5];
        xs[6] = x[c6];
        xs[7] = x[c7];
        acc = _mm256_fmadd_ps(csr_load8<V>(vp), _mm256_load_ps(xs), acc);
      }
      c0 = c0 < kmax ? c0 : kmax;
      c1 = c1 < kmax ? c1 : kmax;
      c2 = c2 < kmax ? c2 : kmax;
      c3 = c3 < kmax ? c3 : kmax;
      c4 = c4 < kmax ? c4 : kmax;
      c5 = c5 < kmax ? c5 : kmax;
      c6 = c6 < kmax ? c6 : kmax;
      c7 = c7 < kmax ? c7 : kmax;
    }
    if (w.scales) acc = _mm256_mul_ps(acc, _mm256_loadu_ps(w.scales + g * kSellLanes));
    alignas(32) float out[8];
    _mm256_store_ps(out, acc);
    for (int l = 0; l < kSellLanes; ++l) {
      const uint64_t row = static_cast<uint64_t>(static_cast<int64_t>(w.perm[g * kSellLanes + l]));
      if (row < n) y[row] = out[l];
    }
  }
}

// kRank[m][j]: the position of the j-th set bit of the 8-bit mask m (0 past the last).
struct RankTable {
  uint8_t v[256][8];
};
constexpr RankTable make_rank_table() {
  RankTable t{};
  for (int m = 0; m < 256; ++m) {
    int j = 0;
    for (int b = 0; b < 8; ++b)
      if (m & (1 << b)) t.v[m][j++] = static_cast<uint8_t>(b);
  }
  return t;
}
alignas(64) constexpr RankTable kRank = make_rank_table();

// nm with 8 values per 16 columns and 4 in each half (2:4, 4:8): x at the mask's positions is picked per
// half with vpermps from the rank table and the halves blended, then one FMA with the values as stored.
// (On Zen 4: 8.3 nonzeros/ns, against 3.9 for vexpandps on the values.) A mask with other counts only gives
// wrong numbers: every load is at a fixed offset.
template <typename V>
void nm8_gemv(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const V* vals = static_cast<const V*>(w.values);
  const int64_t kc = w.kc;
  for (int64_t row = u0; row < u1 && row < w.n; ++row) {
    const uint16_t* mp = w.masks + row * kc;
    const V* vp = vals + row * kc * 8;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    auto step = [&](int64_t c, __m256& acc) {
      const uint32_t m = mp[c];
      uint32_t lo, hi;
      std::memcpy(&lo, kRank.v[m & 0xFF], 4);
      std::memcpy(&hi, kRank.v[m >> 8], 4);
      const __m256i idx = _mm256_cvtepu8_epi32(
          _mm_unpacklo_epi32(_mm_cvtsi32_si128(static_cast<int>(lo)), _mm_cvtsi32_si128(static_cast<int>(hi))));
      const __m256 xl = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + c * kNmChunk), idx);
      const __m256 xh = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + c * kNmChunk + 8), idx);
      acc = _mm256_fmadd_ps(csr_load8<V>(vp + c * 8), _mm256_blend_ps(xl, xh, 0xF0), acc);
    };
    int64_t ch = 0;
    for (; ch + 2 <= kc; ch += 2) {
      step(ch, a0);
      step(ch + 1, a1);
    }
    if (ch < kc) step(ch, a0);
    const __m256 a = _mm256_add_ps(a0, a1);
    __m128 t = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    t = _mm_add_ps(t, _mm_movehl_ps(t, t));
    t = _mm_add_ss(t, _mm_movehdup_ps(t));
    y[row] = _mm_cvtss_f32(t) * (w.scales ? w.scales[row] : 1.0f);
  }
}
