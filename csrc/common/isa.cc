#include "common/isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define SLIMNN_X86 1
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

#if defined(__aarch64__)
#define SLIMNN_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

namespace slimnn {
namespace {

const char* const kIsaNames[kNumIsas] = {"portable", "avx2", "avxvnni", "avx512", "avx512vnni", "avx512vbmi2", "amx",
                                         "amx_bf16", "neon",    "dotprod", "i8mm"};

struct Detection {
  uint32_t mask = kIsaPortable;
  CpuIdInfo info{"", "", false, false, ""};
};

#if defined(SLIMNN_X86)
void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) { __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]); }

uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

// Linux keeps AMX tile data (XTILEDATA, state component 18) off until a process asks for it.
bool request_amx_permission() {
#if defined(__linux__)
  constexpr long kArchGetXcompPerm = 0x1022;
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return false;
  return (bitmask & (1ul << kXfeatureXtiledata)) != 0;
#else
  return false;
#endif
}
#endif

#if defined(SLIMNN_ARM64)
// The kernel's hwcaps are the OS's word that the instructions work in user space (the ID registers alone do
// not say whether the kernel enabled SVE state, for instance). Bits from Linux arch/arm64/include/uapi/
// asm/hwcap.h, spelled out so that old libc headers still build.
void detect_arm(Detection& d) {
  bool asimd = false, dotprod = false, i8mm = false, bf16 = false, sve = false, sve2 = false;
#if defined(__linux__)
  const unsigned long hw = getauxval(AT_HWCAP), hw2 = getauxval(AT_HWCAP2);
  asimd = hw & (1ul << 1);     // HWCAP_ASIMD
  dotprod = hw & (1ul << 20);  // HWCAP_ASIMDDP
  sve = hw & (1ul << 22);      // HWCAP_SVE
  sve2 = hw2 & (1ul << 1);     // HWCAP2_SVE2
  i8mm = hw2 & (1ul << 13);    // HWCAP2_I8MM
  bf16 = hw2 & (1ul << 14);    // HWCAP2_BF16
#elif defined(__APPLE__)
  auto has = [](const char* key) {
    int v = 0;
    size_t n = sizeof v;
    return sysctlbyname(key, &v, &n, nullptr, 0) == 0 && v != 0;
  };
  asimd = true;  // every arm64 Mac
  dotprod = has("hw.optional.arm.FEAT_DotProd");
  i8mm = has("hw.optional.arm.FEAT_I8MM");
  bf16 = has("hw.optional.arm.FEAT_BF16");
#else
  asimd = true;  // Advanced SIMD is mandatory in AArch64 user space
#endif
  const char* words[6] = {"asimd", "asimddp", "i8mm", "bf16", "sve", "sve2"};
  const bool on[6] = {asimd, dotprod, i8mm, bf16, sve, sve2};
  for (int i = 0; i < 6; ++i)
    if (on[i]) d.info.features += (d.info.features.empty() ? "" : " ") + std::string(words[i]);
  if (asimd) d.mask |= kIsaNeon;
  if ((d.mask & kIsaNeon) && dotprod) d.mask |= kIsaDotprod;
  if ((d.mask & kIsaDotprod) && i8mm) d.mask |= kIsaI8mm;
}
#endif

Detection detect() {
  Detection d;
#if defined(SLIMNN_X86)
  uint32_t r[4];
  cpuid(0, 0, r);
  const uint32_t max_leaf = r[0];
  char vendor[13] = {0};
  std::memcpy(vendor + 0, &r[1], 4);
  std::memcpy(vendor + 4, &r[3], 4);
  std::memcpy(vendor + 8, &r[2], 4);
  d.info.vendor = vendor;
  cpuid(0x80000000u, 0, r);
  if (r[0] >= 0x80000004u) {
    char brand[49] = {0};
    for (uint32_t i = 0; i < 3; ++i) {
      cpuid(0x80000002u + i, 0, r);
      std::memcpy(brand + 16 * i, r, 16);
    }
    d.info.brand = brand;
    while (!d.info.brand.empty() && d.info.brand.back() == ' ') d.info.brand.pop_back();
    size_t first = d.info.brand.find_first_not_of(' ');
    d.info.brand = first == std::string::npos ? "" : d.info.brand.substr(first);
  }
  if (max_leaf < 7) return d;
  cpuid(1, 0, r);
  const uint32_t ecx1 = r[2];
  const bool osxsave = ecx1 & (1u << 27);
  const bool fma = ecx1 & (1u << 12);
  const bool f16c = ecx1 & (1u << 29);
  if (!osxsave) return d;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6;           // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;   // XTILECFG + XTILEDATA
  cpuid(7, 0, r);
  const uint32_t ebx7 = r[1], ecx7 = r[2], edx7 = r[3];
  const uint32_t max_sub7 = r[0];
  uint32_t eax7_1 = 0;
  if (max_sub7 >= 1) {
    cpuid(7, 1, r);
    eax7_1 = r[0];
  }
  const bool avx2 = ebx7 & (1u << 5);
  const bool avx512f = ebx7 & (1u << 16), avx512dq = ebx7 & (1u << 17);
  const bool avx512bw = ebx7 & (1u << 30), avx512vl = ebx7 & (1u << 31);
  const bool avx512vnni = ecx7 & (1u << 11);
  const bool avx512vbmi2 = ecx7 & (1u << 6);
  // The avx512vbmi2 word's kernels also use vpermi2b (AVX512_VBMI) and bzhi (BMI2): every VBMI2 CPU has both.
  const bool avx512vbmi = ecx7 & (1u << 1), bmi2 = ebx7 & (1u << 8);
  const bool amx_bf16 = edx7 & (1u << 22), amx_tile = edx7 & (1u << 24), amx_int8 = edx7 & (1u << 25);
  const bool avxvnni = eax7_1 & (1u << 4);
  if (os_ymm && avx2 && fma && f16c) d.mask |= kIsaAvx2;
  if ((d.mask & kIsaAvx2) && avxvnni) d.mask |= kIsaAvxVnni;
  if ((d.mask & kIsaAvx2) && os_zmm && avx512f && avx512bw && avx512vl && avx512dq) d.mask |= kIsaAvx512;
  if ((d.mask & kIsaAvx512) && avx512vnni) d.mask |= kIsaAvx512Vnni;
  if ((d.mask & kIsaAvx512Vnni) && avx512vbmi2 && avx512vbmi && bmi2) d.mask |= kIsaAvx512Vbmi2;
  if ((d.mask & kIsaAvx512) && os_amx && amx_tile && amx_int8) {
    d.info.amx_permission_requested = true;
    d.info.amx_permission_granted = request_amx_permission();
    if (d.info.amx_permission_granted) d.mask |= kIsaAmx;
    // amx_bf16 (tdpbf16ps) on top of amx: same tile state and permission; every AMX-BF16 CPU so far
    // (Sapphire Rapids and newer) also has AMX-INT8, and the words are ordered, so it implies amx.
    if ((d.mask & kIsaAmx) && amx_bf16) d.mask |= kIsaAmxBf16;
  }
#endif
#if defined(SLIMNN_ARM64)
  detect_arm(d);
#endif
  return d;
}

const Detection& detection() {
  static const Detection d = detect();  // immutable after the first call; thread-safe init
  return d;
}

uint32_t initial_ceiling() {
  const char* env = std::getenv("SLIMNN_ISA");
  if (env == nullptr || *env == '\0') return ~0u;
  const uint32_t bit = isa_from_name(env);
  return bit ? isa_mask_up_to(bit) : ~0u;  // an unknown word is reported by the Python layer
}

std::atomic<uint32_t>& ceiling() {
  static std::atomic<uint32_t> c{initial_ceiling()};
  return c;
}

}  // namespace

const char* isa_name(uint32_t bit) {
  for (int i = 0; i < kNumIsas; ++i)
    if (bit == (1u << i)) return kIsaNames[i];
  return "unknown";
}

uint32_t isa_from_name(const std::string& name) {
  for (int i = 0; i < kNumIsas; ++i)
    if (name == kIsaNames[i]) return 1u << i;
  return 0;
}

uint32_t isa_mask_up_to(uint32_t bit) { return bit | (bit - 1); }

uint32_t detected_isa_mask() { return detection().mask; }

uint32_t built_isa_mask() {
  uint32_t m = kIsaPortable;
#if defined(SLIMNN_BUILT_AVX2)
  m |= kIsaAvx2;
#endif
#if defined(SLIMNN_BUILT_AVX512)
  m |= kIsaAvx512;
#endif
#if defined(SLIMNN_BUILT_AVX512VNNI)
  m |= kIsaAvx512Vnni;
#endif
#if defined(SLIMNN_BUILT_AVX512VBMI2)
  m |= kIsaAvx512Vbmi2;
#endif
#if defined(SLIMNN_BUILT_NEON)
  m |= kIsaNeon;
#endif
#if defined(SLIMNN_BUILT_DOTPROD)
  m |= kIsaDotprod;
#endif
#if defined(SLIMNN_BUILT_I8MM)
  m |= kIsaI8mm;
#endif
#if defined(SLIMNN_BUILT_AMX)
  m |= kIsaAmx | kIsaAmxBf16;  // the amx files are compiled with -mamx-bf16 too (cmake/isa_flags.cmake)
#endif
  return m;
}

uint32_t current_isa_mask() {
  return detected_isa_mask() & built_isa_mask() & ceiling().load(std::memory_order_relaxed);
}

bool force_isa(uint32_t isa) {
  if (isa == 0) {
    ceiling().store(initial_ceiling());
    return true;
  }
  if (isa_name(isa)[0] == 'u') return false;
  ceiling().store(initial_ceiling() & isa_mask_up_to(isa));  // may only lower
  return true;
}

uint32_t best_isa(uint32_t mask) {
  uint32_t best = kIsaPortable;
  for (int i = 0; i < kNumIsas; ++i)
    if (mask & (1u << i)) best = 1u << i;
  return best;
}

CpuIdInfo cpu_id_info() { return detection().info; }

}  // namespace slimnn
