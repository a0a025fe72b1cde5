// csr GEMV (M = 1) for x86, shared by the AVX2 and AVX-512 files: each includes it inside its own ISA
// namespace, so the two instantiations never meet (ODR-safe). Uses AVX2 + FMA instructions only.
//
// Why scalar cursors: a slice's 8 column cursors live in general registers and every activation x[col] is
// fetched by its own scalar load into a vector; the deltas of one slot arrive in one 32- or 64-bit load.
// On Zen 4 this runs 1.4 entries per cycle against 1.0 for vgatherdps (16- or 8-wide), which is microcoded
// there, and the cursors can only grow by at most 8 * max_delta between two clamps (kClampSlots), the zero
// padding the driver puts after x (xpad_slots = 8 in kernels.inc).
// Measured on an AMD EPYC (Zen 4) with /tmp prototypes; untested on Intel cores, where gathers are cheaper.
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
        uint64_t d;
        if (BITS == 8) {
          std::memcpy(&d, dp, 8);
        } else {
          uint32_t d32;
          std::memcpy(&d32, dp, 4);
          d = d32;
        }
        c0 += d & M;
        c1 += (d >> BITS) & M;
        c2 += (d >> (2 * BITS)) & M;
        c3 += (d >> (3 * BITS)) & M;
        c4 += (d >> (4 * BITS)) & M;
        c5 += (d >> (5 * BITS)) & M;
        c6 += (d >> (6 * BITS)) & M;
        c7 += (d >> (7 * BITS)) & M;
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
