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

#include "kernels/spmm/kernel_common.h"  // clampi, row_ok, row_scale, BsrShape (first in both ISA files)

template <typename V>
inline __m128 load4(const V* p);
template <>
inline __m128 load4<float>(const float* p) {
  return _mm_loadu_ps(p);
}
template <>
inline __m128 load4<int8_t>(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm_cvtepi32_ps(_mm_cvtepi8_epi32(_mm_cvtsi32_si128(v)));
}

constexpr int kClampSlots = 8;
constexpr int64_t kPrefetchSlots = 128;  // about 300 ns of work ahead at 1.7 entries per cycle

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

// One slot of a slice: decode the 8 byte-wide deltas (half by byte loads, half by shifts, so that neither
// the load ports nor the ALUs saturate), fetch the 8 activations, one FMA. D: the slot's deltas, P: values.
#define SLIMNN_CSR_SLOT(D, P)                                                                     \
  do {                                                                                            \
    uint32_t hi_;                                                                                 \
    std::memcpy(&hi_, (D) + 4, 4);                                                                \
    c0 += (D)[0];                                                                                 \
    c1 += (D)[1];                                                                                 \
    c2 += (D)[2];                                                                                 \
    c3 += (D)[3];                                                                                 \
    c4 += hi_ & 0xFF;                                                                             \
    c5 += (hi_ >> 8) & 0xFF;                                                                      \
    c6 += (hi_ >> 16) & 0xFF;                                                                     \
    c7 += hi_ >> 24;                                                                              \
    const __m128 p01_ = _mm_insert_ps(_mm_load_ss(x + c0), _mm_load_ss(x + c1), 0x10);             \
    const __m128 p23_ = _mm_insert_ps(_mm_load_ss(x + c2), _mm_load_ss(x + c3), 0x10);             \
    const __m128 p45_ = _mm_insert_ps(_mm_load_ss(x + c4), _mm_load_ss(x + c5), 0x10);             \
    const __m128 p67_ = _mm_insert_ps(_mm_load_ss(x + c6), _mm_load_ss(x + c7), 0x10);             \
    const __m256 xv_ = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_movelh_ps(p01_, p23_)),    \
                                            _mm_movelh_ps(p45_, p67_), 1);                       \
    acc = _mm256_fmadd_ps(csr_load8<V>(P), xv_, acc);                                            \
  } while (0)

#define SLIMNN_CLAMP(c) c = c < kmax ? c : kmax
// Slot u of a block of 8, then lane u's clamp (every lane once per block: kClampSlots).
#define SLIMNN_CSR_SLOT_CLAMP(u)                   \
  do {                                             \
    SLIMNN_CSR_SLOT(dp + 8 * (u), vp + 8 * (u));   \
    SLIMNN_CLAMP(c##u);                            \
  } while (0)
#define SLIMNN_CLAMP_ALL()                                                   \
  do {                                                                       \
    SLIMNN_CLAMP(c0); SLIMNN_CLAMP(c1); SLIMNN_CLAMP(c2); SLIMNN_CLAMP(c3);  \
    SLIMNN_CLAMP(c4); SLIMNN_CLAMP(c5); SLIMNN_CLAMP(c6); SLIMNN_CLAMP(c7);  \
  } while (0)

// 4-bit deltas to bytes, 8 per slot (lane 2i: low nibble of byte i, lane 2i + 1: high nibble). Scalar
// decoding of nibbles needed more integer registers than x86-64 has and ran 1.5x slower than bytes.
inline void expand_nibbles(const uint8_t* src, int64_t nbytes, uint8_t* dst) {
  const __m128i m = _mm_set1_epi8(0x0F);
  int64_t i = 0;
  for (; i + 16 <= nbytes; i += 16) {
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i), _mm_unpacklo_epi8(lo, hi));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * i + 16), _mm_unpackhi_epi8(lo, hi));
  }
  for (; i < nbytes; ++i) {
    dst[2 * i] = src[i] & 15;
    dst[2 * i + 1] = static_cast<uint8_t>(src[i] >> 4);
  }
}

constexpr int64_t kNibbleChunk = 256;  // slots expanded at a time (a multiple of 8: blocks stay aligned)

template <int BITS, typename V>
void csr_gemv(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  const uint64_t kmax = static_cast<uint64_t>(w.k - 1);
  const uint64_t n = static_cast<uint64_t>(w.n);
  alignas(64) uint8_t dbuf[BITS == 4 ? kNibbleChunk * 8 : 1];
  for (int64_t g = u0; g < u1; ++g) {
    const int64_t j0 = w.ptr[g], j1 = w.ptr[g + 1];
    uint64_t c0 = 0, c1 = 0, c2 = 0, c3 = 0, c4 = 0, c5 = 0, c6 = 0, c7 = 0;
    __m256 acc = _mm256_setzero_ps();
    const V* vp = static_cast<const V*>(w.values) + j0 * kSellLanes;
    for (int64_t js = j0; js < j1; js += kNibbleChunk) {  // 8-bit deltas run in one piece
      const int64_t count = BITS == 8 ? j1 - js : (j1 - js < kNibbleChunk ? j1 - js : kNibbleChunk);
      const uint8_t* dp = w.deltas + js * 8;
      const char* pd = reinterpret_cast<const char*>(w.deltas + (js + kPrefetchSlots) * BITS);  // the stream
      if (BITS == 4) {
        expand_nibbles(w.deltas + js * 4, count * 4, dbuf);
        dp = dbuf;
      }
      // Byte deltas at dp, values at vp, `count` slots. Blocks of 8 slots: lane u is clamped after the
      // block's slot u, so every cursor is clamped once in any 8 consecutive slots (kClampSlots) and never
      // runs more than 8 * max_delta past K; the last < 8 slots clamp every lane.
      const uint8_t* const dblocks = dp + (count & ~int64_t{7}) * 8;
      const uint8_t* const dend = dp + count * 8;
      for (; dp != dblocks; dp += 64, vp += 8 * kSellLanes) {
        // The hardware prefetcher alone left this loop at about half the DRAM bandwidth when the weights
        // stream from memory (model-sized runs); the values kPrefetchSlots ahead are requested here.
        const char* pv = reinterpret_cast<const char*>(vp + kPrefetchSlots * kSellLanes);
        for (int b = 0; b < int(8 * kSellLanes * sizeof(V)); b += 64) _mm_prefetch(pv + b, _MM_HINT_T0);
        _mm_prefetch(pd, _MM_HINT_T0);  // the deltas kPrefetchSlots ahead in the blob (d4: of the next chunks)
        pd += 8 * BITS;
        SLIMNN_CSR_SLOT_CLAMP(0);
        SLIMNN_CSR_SLOT_CLAMP(1);
        SLIMNN_CSR_SLOT_CLAMP(2);
        SLIMNN_CSR_SLOT_CLAMP(3);
        SLIMNN_CSR_SLOT_CLAMP(4);
        SLIMNN_CSR_SLOT_CLAMP(5);
        SLIMNN_CSR_SLOT_CLAMP(6);
        SLIMNN_CSR_SLOT_CLAMP(7);
      }
      for (; dp != dend; dp += 8, vp += kSellLanes) {
        SLIMNN_CSR_SLOT(dp, vp);
        SLIMNN_CLAMP_ALL();
      }
      if (BITS == 8) break;
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
#undef SLIMNN_CLAMP_ALL
#undef SLIMNN_CSR_SLOT_CLAMP
#undef SLIMNN_CLAMP
#undef SLIMNN_CSR_SLOT

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

template <typename V>
void csr_m1(const SparseView& w, int64_t u0, int64_t u1, const float* x, float* y) {
  if (w.index_bits == 4) return csr_gemv<4, V>(w, u0, u1, x, y);
  return csr_gemv<8, V>(w, u0, u1, x, y);
}

// ---------------------------------------------------------------- bsr: shapes, the GEMVs' common walk
// (BsrShape / with_bsr_shape: kernel_common.h)

// The bsr GEMVs of both ISA files walk the block rows alike; their blocks' inner loops differ by design.
// blk.vals: the stored values, block after block; blk.col(i): block i's column in blocks, clamped to the
// last (a corrupt index reads the zero padding after x, never past it).
template <typename V>
struct BsrBlocks {
  const V* vals;
  const uint16_t* bcol;
  int64_t kbmax;
  int64_t col(int64_t i) const { return clampi(bcol[i], kbmax); }
};

// body(b, i, e, blk) for every block row b of [u0, u1); its blocks are [i, e).
template <typename V, typename Body>
inline void bsr_gemv_rows(const SparseView& w, int64_t u0, int64_t u1, Body&& body) {
  const BsrBlocks<V> blk{static_cast<const V*>(w.values), w.bcol, w.kb - 1};
  for (int64_t b = u0; b < u1; ++b) body(b, int64_t{w.ptr[b]}, int64_t{w.ptr[b + 1]}, blk);
}

// 1x4 blocks [i, e) one at a time (what the 1x4 GEMVs leave after their wide steps): a 4-lane sum.
template <typename V>
inline __m128 bsr1x4_rest(const BsrBlocks<V>& blk, int64_t i, int64_t e, const float* x) {
  __m128 t = _mm_setzero_ps();
  for (; i < e; ++i) t = _mm_fmadd_ps(load4<V>(blk.vals + i * 4), _mm_loadu_ps(x + blk.col(i) * 4), t);
  return t;
}
