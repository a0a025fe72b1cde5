// AMX tiles (palette 1) behind one small class, `Tiles`, with two back ends chosen at compile time:
//  - the real instructions (ldtilecfg, tileloadd, tdpbusd, tdpbssd, tdpbf16ps, tilestored, tilezero,
//    tilerelease) in a file compiled with the amx flags (cmake/isa_flags.cmake); include <immintrin.h> first;
//  - SLIMNN_AMX_EMULATE defined to 1: plain C++ with the architectural semantics below, so the same kernel
//    source, compiled a second time, runs (slowly) on any CPU and its packing, tails, threading and
//    epilogues are tested against the reference everywhere. Include <cmath>, <cstdlib>, <cstring> first.
// Include inside the ISA file's own namespace (ODR safety), like the other simd headers.
// (not a header guard: included once per translation unit, inside a namespace)
//
// What the emulation models (Intel SDM vol. 2, "Intel AMX" instruction pages; Intel's AMX ISA reference):
//  - Palette 1: 8 tiles of at most 16 rows x 64 bytes. ldtilecfg checks the 64-byte config (palette 0 or 1,
//    reserved bytes 0, rows <= 16, colsb <= 64, rows == 0 iff colsb == 0, tiles 8..15 unused) and zeroes
//    every tile; an invalid config is #GP on hardware: std::abort() here. Palette 0 releases the tiles.
//  - An instruction on a tile that is not configured, or operands whose shapes do not match, is #UD on
//    hardware: std::abort() here (a bug of the kernel, never a consequence of user input).
//  - tileloadd: rows x colsb bytes from base + r * stride; the tile's bytes past colsb in each row and its
//    rows past `rows` are zero. tilestored writes exactly rows x colsb bytes (nothing between the rows).
//  - tdpbusd / tdpbssd: C[m][n] += sum over k < A.colsb / 4 of the four products A[m][4k+i] * B[k][4n+i]
//    (u8 x s8 / s8 x s8), in int32 with wrap-around (the hardware's DPBD); requires C.rows == A.rows,
//    A.colsb == 4 * B.rows, C.colsb == B.colsb. Integer addition is associative mod 2^32, so the emulated
//    sums are the hardware's bit for bit whatever the order.
//  - tdpbf16ps: per the SDM's pseudo-code, for each k < A.colsb / 4: C[m][n] += a0 * b0, then C[m][n] +=
//    a1 * b1 for the bf16 pair (a0, a1) of A[m] at k and (b0, b1) of B[k] at n. Each product of two bf16
//    values is exact in fp32 (8-bit significands), each addition rounds to nearest even (MXCSR is neither
//    read nor written); bf16 denormal inputs are read as zero (DAZ) and denormal results (products and
//    sums) are flushed to zero of the same sign (FTZ). That is our reading of the SDM text; it has NOT been
//    checked against hardware (no AMX machine here), and some implementations may fuse the pair. Kernels
//    that use it are tested with tolerances, never bit for bit against the real instruction.
//
// The gcc 12 trap: its _tile_loadconfig is an asm whose memory operand is `*(const void**)config`, 8 bytes,
// so the compiler believes ldtilecfg reads only the palette, start row and 6 reserved bytes: at -O2 the stores
// of colsb[] and rows[] can be deleted as dead and the tiles come out configured with whatever the stack
// held (llama.cpp's AMX code hit it: ggml-org/llama.cpp#26954 moved its config to .rodata). Shapes that
// happen to survive can still look right, hence the tests at M > 1 and with tails. configure() makes the
// struct's address an input of an empty asm with a "memory" clobber before _tile_loadconfig. gcc's
// tileloadd asm has no memory operand either: load() puts the same barrier before it.

struct alignas(64) TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];  // bytes per row of tile t
  uint8_t rows[16];    // rows of tile t
};
static_assert(sizeof(TileConfig) == 64, "the ldtilecfg operand is 64 bytes");

constexpr int kTileMaxRows = 16;
constexpr int kTileMaxColsb = 64;
constexpr int kNumTiles = 8;

// A zeroed palette-1 config; set_tile() fills one tile's shape.
inline TileConfig tile_config() {
  TileConfig c;
  std::memset(&c, 0, sizeof(c));
  c.palette = 1;
  return c;
}
inline void set_tile(TileConfig& c, int t, int rows, int colsb) {
  c.rows[t] = static_cast<uint8_t>(rows);
  c.colsb[t] = static_cast<uint16_t>(colsb);
}

#if defined(SLIMNN_AMX_EMULATE) && SLIMNN_AMX_EMULATE

class Tiles {
 public:
  Tiles() { release(); }

  void configure(const TileConfig& c) {
    bool ok = c.palette <= 1 && c.start_row == 0;
    for (int i = 0; i < 14; ++i) ok = ok && c.reserved[i] == 0;
    for (int t = 0; t < 16; ++t) {
      const bool used = c.rows[t] != 0 || c.colsb[t] != 0;
      if (!used) continue;
      ok = ok && c.palette == 1 && t < kNumTiles && c.rows[t] != 0 && c.colsb[t] != 0 &&
           c.rows[t] <= kTileMaxRows && c.colsb[t] <= kTileMaxColsb;
    }
    if (!ok) std::abort();  // #GP
    if (c.palette == 0) {
      release();
      return;
    }
    cfg_ = c;
    std::memset(t_, 0, sizeof(t_));
  }

  void release() {
    std::memset(&cfg_, 0, sizeof(cfg_));
    std::memset(t_, 0, sizeof(t_));
  }

  template <int T>
  void zero() {
    shape<T>();
    std::memset(t_[T], 0, sizeof(t_[T]));
  }

  template <int T>
  void load(const void* base, int64_t stride) {
    const int rows = shape<T>(), colsb = cfg_.colsb[T];
    std::memset(t_[T], 0, sizeof(t_[T]));
    for (int r = 0; r < rows; ++r) std::memcpy(t_[T][r], static_cast<const uint8_t*>(base) + r * stride, colsb);
  }

  template <int T>
  void store(void* base, int64_t stride) const {
    const int rows = shape<T>(), colsb = cfg_.colsb[T];
    for (int r = 0; r < rows; ++r) std::memcpy(static_cast<uint8_t*>(base) + r * stride, t_[T][r], colsb);
  }

  template <int C, int A, int B>
  void dpbusd() {
    dp_int8<C, A, B, false>();
  }
  template <int C, int A, int B>
  void dpbssd() {
    dp_int8<C, A, B, true>();
  }

  template <int C, int A, int B>
  void dpbf16ps() {
    const int rows = check_dp<C, A, B>();
    const int kn = cfg_.colsb[A] / 4, nn = cfg_.colsb[C] / 4;
    for (int m = 0; m < rows; ++m)
      for (int k = 0; k < kn; ++k)
        for (int n = 0; n < nn; ++n) {
          float acc = get_f32(C, m, n);
          for (int i = 0; i < 2; ++i) {
            const float a = bf16_daz(get_u16(A, m, 2 * k + i)), b = bf16_daz(get_u16(B, k, 2 * n + i));
            acc = ftz(acc + ftz(a * b));  // a * b is exact unless it falls below FLT_MIN, where it flushes
          }
          set_f32(C, m, n, acc);
        }
  }

 private:
  template <int T>
  int shape() const {
    static_assert(T >= 0 && T < kNumTiles, "palette 1 has tiles 0..7");
    if (cfg_.palette != 1 || cfg_.rows[T] == 0) std::abort();  // #UD: tile not configured
    return cfg_.rows[T];
  }

  template <int C, int A, int B>
  int check_dp() const {
    static_assert(C != A && C != B && A != B, "tdp* needs three distinct tiles");
    const int rows = shape<C>();
    shape<A>();
    shape<B>();
    if (cfg_.rows[A] != rows || cfg_.colsb[A] != 4 * cfg_.rows[B] || cfg_.colsb[C] != cfg_.colsb[B] ||
        cfg_.colsb[A] % 4 != 0 || cfg_.colsb[C] % 4 != 0)
      std::abort();  // #UD: shapes do not match
    return rows;
  }

  template <int C, int A, int B, bool kSignedA>
  void dp_int8() {
    const int rows = check_dp<C, A, B>();
    const int kn = cfg_.colsb[A] / 4, nn = cfg_.colsb[C] / 4;
    for (int m = 0; m < rows; ++m)
      for (int n = 0; n < nn; ++n) {
        uint32_t acc = get_u32(C, m, n);
        for (int k = 0; k < kn; ++k)
          for (int i = 0; i < 4; ++i) {
            const uint8_t ab = t_[A][m][4 * k + i];
            const int32_t av = kSignedA ? int32_t(int8_t(ab)) : int32_t(ab);
            const int32_t bv = int8_t(t_[B][k][4 * n + i]);
            acc += uint32_t(av * bv);  // |av * bv| <= 2^15: no overflow before the wrapping sum
          }
        set_u32(C, m, n, acc);
      }
  }

  uint32_t get_u32(int t, int r, int i) const {
    uint32_t v;
    std::memcpy(&v, &t_[t][r][4 * i], 4);
    return v;
  }
  void set_u32(int t, int r, int i, uint32_t v) { std::memcpy(&t_[t][r][4 * i], &v, 4); }
  float get_f32(int t, int r, int i) const {
    float v;
    std::memcpy(&v, &t_[t][r][4 * i], 4);
    return v;
  }
  void set_f32(int t, int r, int i, float v) { std::memcpy(&t_[t][r][4 * i], &v, 4); }
  uint16_t get_u16(int t, int r, int i) const {
    uint16_t v;
    std::memcpy(&v, &t_[t][r][2 * i], 2);
    return v;
  }
  static float bf16_daz(uint16_t h) {
    if ((h & 0x7f80u) == 0) h &= 0x8000u;  // exponent 0: zero or denormal -> signed zero
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  static float ftz(float f) { return std::fabs(f) < 1.17549435e-38f ? std::copysign(0.0f, f) : f; }

  TileConfig cfg_;
  alignas(64) uint8_t t_[kNumTiles][kTileMaxRows][kTileMaxColsb];
};

#else  // the real instructions

// gcc's tile intrinsics are macros that paste the tile number into the asm text, so they need a literal:
// each member below picks its instruction with `if constexpr` over the literals (for the tdp* forms, over
// the (C, A, B) triples listed in SLIMNN_AMX_DP_FORMS; add one there to use it).
#define SLIMNN_AMX_TILES(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)
#define SLIMNN_AMX_DP_FORMS(X) X(0, 4, 6) X(1, 4, 7) X(2, 5, 6) X(3, 5, 7) X(0, 1, 2)

constexpr bool amx_dp_form_listed(int c, int a, int b) {
#define SLIMNN_AMX_LISTED(C_, A_, B_) (c == C_ && a == A_ && b == B_) ||
  return SLIMNN_AMX_DP_FORMS(SLIMNN_AMX_LISTED) false;
#undef SLIMNN_AMX_LISTED
}

class Tiles {
 public:
  void configure(const TileConfig& c) {
    asm volatile("" : : "r"(&c) : "memory");  // the gcc 12 trap (header comment): the stores to c must happen
    _tile_loadconfig(&c);
  }
  void release() { _tile_release(); }
  template <int T>
  void zero() {
#define SLIMNN_AMX_ZERO(N_) if constexpr (T == N_) _tile_zero(N_);
    SLIMNN_AMX_TILES(SLIMNN_AMX_ZERO)
#undef SLIMNN_AMX_ZERO
  }
  template <int T>
  void load(const void* base, int64_t stride) {
    // gcc's tileloadd asm does not say it reads memory: without this barrier, stores to a local buffer made
    // just before (the zero-filled K tails) could be moved past the load or deleted.
    asm volatile("" : : "r"(base) : "memory");
#define SLIMNN_AMX_LOAD(N_) if constexpr (T == N_) _tile_loadd(N_, base, stride);
    SLIMNN_AMX_TILES(SLIMNN_AMX_LOAD)
#undef SLIMNN_AMX_LOAD
  }
  template <int T>
  void store(void* base, int64_t stride) const {  // gcc's tilestored asm has the "memory" clobber
#define SLIMNN_AMX_STORE(N_) if constexpr (T == N_) _tile_stored(N_, base, stride);
    SLIMNN_AMX_TILES(SLIMNN_AMX_STORE)
#undef SLIMNN_AMX_STORE
  }
#define SLIMNN_AMX_DP_MEMBER(op, intrinsic)                                                          \
  template <int C, int A, int B>                                                                     \
  void op() {                                                                                        \
    static_assert(amx_dp_form_listed(C, A, B), "add (C, A, B) to SLIMNN_AMX_DP_FORMS");             \
    SLIMNN_AMX_DP_FORMS(SLIMNN_AMX_DP_CASE_##op)                                                    \
  }
#define SLIMNN_AMX_DP_CASE_dpbusd(C_, A_, B_) if constexpr (C == C_ && A == A_ && B == B_) _tile_dpbusd(C_, A_, B_);
#define SLIMNN_AMX_DP_CASE_dpbssd(C_, A_, B_) if constexpr (C == C_ && A == A_ && B == B_) _tile_dpbssd(C_, A_, B_);
#define SLIMNN_AMX_DP_CASE_dpbf16ps(C_, A_, B_) \
  if constexpr (C == C_ && A == A_ && B == B_) _tile_dpbf16ps(C_, A_, B_);
  SLIMNN_AMX_DP_MEMBER(dpbusd, _tile_dpbusd)
  SLIMNN_AMX_DP_MEMBER(dpbssd, _tile_dpbssd)
  SLIMNN_AMX_DP_MEMBER(dpbf16ps, _tile_dpbf16ps)
#undef SLIMNN_AMX_DP_MEMBER
#undef SLIMNN_AMX_DP_CASE_dpbusd
#undef SLIMNN_AMX_DP_CASE_dpbssd
#undef SLIMNN_AMX_DP_CASE_dpbf16ps
};

#undef SLIMNN_AMX_TILES
#undef SLIMNN_AMX_DP_FORMS

#endif
