// Instruction-set detection and the process-wide ISA mask.
//
// mask = built-in kernels ∧ CPUID ∧ OS-enabled register state (XGETBV; AMX tile data also needs the Linux
// arch_prctl permission, and AMX is dropped when the kernel refuses it). The mask lives in a std::atomic so
// that SLIMNN_ISA and slimnn.isa.force() still apply after the first kernel call; forcing can only lower it.
#pragma once
#include <cstdint>
#include <string>

namespace slimnn {

// ISA bits, ordered lowest to highest. The words match SLIMNN_ISA and slimnn.isa.force().
enum Isa : uint32_t {
  kIsaPortable = 1u << 0,    // plain C++; always present
  kIsaAvx2 = 1u << 1,        // AVX2 + FMA + F16C
  kIsaAvxVnni = 1u << 2,     // AVX-VNNI (VEX-encoded vpdpbusd on ymm)
  kIsaAvx512 = 1u << 3,      // AVX-512 F/BW/VL/DQ
  kIsaAvx512Vnni = 1u << 4,  // AVX-512 VNNI
  kIsaAvx512Vbmi2 = 1u << 5, // AVX-512 VNNI + VBMI2 (byte compress/expand: the bitmap sparse kernels)
  kIsaAmx = 1u << 6,         // AMX-TILE + AMX-INT8 (+ permission granted)
  kIsaAmxBf16 = 1u << 7,     // + AMX-BF16 (tdpbf16ps): CPUID.(7,0):EDX[22] beside the amx conditions
  // aarch64 (Linux getauxval; macOS sysctlbyname). Above every x86 word, so forcing an x86 word on Arm, or
  // an Arm word on x86, leaves what that CPU has below it; each Arm word implies the ones under it.
  kIsaNeon = 1u << 8,        // Advanced SIMD (asimd) with fp32 FMA: the aarch64 floor
  kIsaDotprod = 1u << 9,     // + SDOT/UDOT (asimddp, Armv8.2 FEAT_DotProd)
  kIsaI8mm = 1u << 10,       // + SMMLA/UMMLA/USMMLA and USDOT (FEAT_I8MM)
};

constexpr int kNumIsas = 11;
const char* isa_name(uint32_t single_bit);
// Parses one word of the closed list; returns 0 for an unknown word.
uint32_t isa_from_name(const std::string& name);
// The mask of ISAs at or below `isa` in the order above.
uint32_t isa_mask_up_to(uint32_t single_bit);

// What the CPU and OS support (ignores what was built and any force). Detected once.
uint32_t detected_isa_mask();
// What kernels were compiled into this build.
uint32_t built_isa_mask();
// The mask kernels are selected from: detected ∧ built ∧ forced ceiling.
uint32_t current_isa_mask();
// Lowers the ceiling to `isa` (a single bit) or restores it with 0. Returns false if `isa` is unknown.
bool force_isa(uint32_t isa);
// The highest bit of a mask.
uint32_t best_isa(uint32_t mask);

struct CpuIdInfo {
  std::string vendor;
  std::string brand;
  bool amx_permission_requested;
  bool amx_permission_granted;
  // Arm: the CPU features found (words of /proc/cpuinfo: "asimd asimddp i8mm bf16 sve sve2"), only some of
  // which have kernels; empty on x86.
  std::string features;
};
CpuIdInfo cpu_id_info();

}  // namespace slimnn
