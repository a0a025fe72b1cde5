# One table of per-ISA compiler flags. Each ISA file is compiled with its own flags only (no global -m
# flags, no -march=native), so the package runs on any x86-64 CPU and the best path is picked at run time.
set(SLIMNN_FLAGS_avx2 -mavx2 -mfma -mf16c)
set(SLIMNN_FLAGS_avx512 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq)
set(SLIMNN_FLAGS_avx512vnni ${SLIMNN_FLAGS_avx512} -mavx512vnni)
set(SLIMNN_FLAGS_avx512vbmi2 ${SLIMNN_FLAGS_avx512vnni} -mavx512vbmi2 -mavx512vbmi -mbmi2 -mpopcnt)

set(SLIMNN_IS_X86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i.86)$")
  set(SLIMNN_IS_X86 ON)
endif()

set(SLIMNN_ISA_LIBS "")
set(SLIMNN_ISA_DEFS "")

# slimnn_add_isa_library(<family> <isa> <sources...>): builds slimnn_<family>_<isa> with the ISA's flags
# when the ISA is enabled and the target is x86; defines SLIMNN_BUILT_<ISA>=1 for the selector.
function(slimnn_add_isa_library family isa)
  string(TOUPPER ${isa} ISA)
  if(NOT SLIMNN_IS_X86 OR NOT SLIMNN_ENABLE_${ISA})
    return()
  endif()
  set(target slimnn_${family}_${isa})
  add_library(${target} STATIC ${ARGN})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc)
  # -Wno-maybe-uninitialized: gcc 12's own AVX-512 headers trip it (_mm512_undefined_*), not our code.
  target_compile_options(${target} PRIVATE ${SLIMNN_FLAGS_${isa}} -Wall -Wextra -Wno-maybe-uninitialized)
  # The ISA's own SLIMNN_BUILT_<ISA>: a kernels.inc expanded inside the ISA file sees its own lines.
  target_compile_definitions(${target} PRIVATE SLIMNN_BUILT_${ISA}=1)
  set(SLIMNN_ISA_LIBS ${SLIMNN_ISA_LIBS} ${target} PARENT_SCOPE)
  target_compile_definitions(slimnn_core PUBLIC SLIMNN_BUILT_${ISA}=1)
endfunction()
