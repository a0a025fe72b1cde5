# One table of per-ISA compiler flags. Each ISA file is compiled with its own flags only (no global -m
# flags, no -march=native), so the package runs on any x86-64 CPU and the best path is picked at run time.
set(SLIMNN_FLAGS_avx2 -mavx2 -mfma -mf16c)
set(SLIMNN_FLAGS_avx512 -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512dq)
set(SLIMNN_FLAGS_avx512vnni ${SLIMNN_FLAGS_avx512} -mavx512vnni)
set(SLIMNN_FLAGS_avx512vbmi2 ${SLIMNN_FLAGS_avx512vnni} -mavx512vbmi2 -mavx512vbmi -mbmi2 -mpopcnt)
# aarch64 (files aarch64_<isa>.cc): Advanced SIMD is in the base ISA; dotprod and i8mm are Armv8.2+ extensions
# (every i8mm CPU also has dotprod: Armv8.6 makes both mandatory).
set(SLIMNN_FLAGS_neon -march=armv8-a)
set(SLIMNN_FLAGS_dotprod -march=armv8.2-a+dotprod)
set(SLIMNN_FLAGS_i8mm -march=armv8.2-a+dotprod+i8mm)
set(SLIMNN_ARM_ISAS neon dotprod i8mm)
# AMX files also use AVX-512 (quantizer, epilogue): every AMX CPU has AVX-512 VNNI and AMX-BF16 beside INT8.
set(SLIMNN_FLAGS_amx ${SLIMNN_FLAGS_avx512vnni} -mamx-tile -mamx-int8 -mamx-bf16)

set(SLIMNN_IS_X86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|i.86)$")
  set(SLIMNN_IS_X86 ON)
endif()
set(SLIMNN_IS_ARM64 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(SLIMNN_IS_ARM64 ON)
endif()

set(SLIMNN_ISA_LIBS "")

# Warnings of the project's own sources (-Werror with SLIMNN_WERROR: CI builds stay at 0 warnings).
set(SLIMNN_WARNINGS -Wall -Wextra)
if(SLIMNN_WERROR)
  list(APPEND SLIMNN_WARNINGS -Werror)
endif()

# slimnn_add_isa_library(<family> <isa> <sources...>): builds slimnn_<family>_<isa> with the ISA's flags
# when the ISA is enabled and the target is its architecture (x86-64, or aarch64 for the words of
# SLIMNN_ARM_ISAS); defines SLIMNN_BUILT_<ISA>=1 for the selector.
function(slimnn_add_isa_library family isa)
  string(TOUPPER ${isa} ISA)
  if(isa IN_LIST SLIMNN_ARM_ISAS)
    set(on_target ${SLIMNN_IS_ARM64})
  else()
    set(on_target ${SLIMNN_IS_X86})
  endif()
  if(NOT on_target OR NOT SLIMNN_ENABLE_${ISA})
    return()
  endif()
  set(target slimnn_${family}_${isa})
  add_library(${target} STATIC ${ARGN})
  target_include_directories(${target} PRIVATE ${PROJECT_SOURCE_DIR}/csrc)
  # -Wno-maybe-uninitialized: gcc 12's own AVX-512 headers trip it (the __Y of _mm512_undefined_*, ~800
  # times in a Release build), not our code; -Wuninitialized (definite uses) stays on.
  target_compile_options(${target} PRIVATE ${SLIMNN_FLAGS_${isa}} ${SLIMNN_WARNINGS} -Wno-maybe-uninitialized)
  # The ISA's own SLIMNN_BUILT_<ISA>: a kernels.inc expanded inside the ISA file sees its own lines.
  target_compile_definitions(${target} PRIVATE SLIMNN_BUILT_${ISA}=1)
  set(SLIMNN_ISA_LIBS ${SLIMNN_ISA_LIBS} ${target} PARENT_SCOPE)
  target_compile_definitions(slimnn_core PUBLIC SLIMNN_BUILT_${ISA}=1)
endfunction()

# slimnn_add_family(<family> [FP_CONTRACT_OFF]): builds the kernel family in csrc/kernels/<family>/ from
# its folder, so that kernels.inc stays the only list a person edits: the portable files (ref.cc,
# select.cc, <family>.cc, whichever exist) go into slimnn_core, and each x86_<isa>.cc / aarch64_<isa>.cc into its own
# slimnn_<family>_<isa> library with that ISA's flags. FP_CONTRACT_OFF: the family promises bit-identical
# results across ISAs, so no compiler-made fused multiply-adds (only the ones written as intrinsics or
# std::fma), or a mul + add pair would round differently per path.
function(slimnn_add_family family)
  cmake_parse_arguments(ARG "FP_CONTRACT_OFF" "" "" ${ARGN})
  set(dir ${PROJECT_SOURCE_DIR}/csrc/kernels/${family})
  set(portable "")
  # amx_emu.cc: the portable emulation of the family's AMX kernel (tests force it on any CPU), no ISA flags.
  foreach(f ref.cc select.cc ${family}.cc amx_emu.cc)
    if(EXISTS ${dir}/${f})
      list(APPEND portable ${dir}/${f})
    endif()
  endforeach()
  target_sources(slimnn_core PRIVATE ${portable})
  file(GLOB isa_files CONFIGURE_DEPENDS ${dir}/x86_*.cc ${dir}/aarch64_*.cc)
  foreach(f ${isa_files})
    get_filename_component(stem ${f} NAME_WE)
    string(REGEX REPLACE "^(x86|aarch64)_" "" isa ${stem})
    if(NOT DEFINED SLIMNN_FLAGS_${isa})
      message(FATAL_ERROR "${f}: no flags for ISA '${isa}' in cmake/isa_flags.cmake")
    endif()
    slimnn_add_isa_library(${family} ${isa} ${f})
  endforeach()
  if(ARG_FP_CONTRACT_OFF)
    set_source_files_properties(${portable} ${isa_files} PROPERTIES COMPILE_OPTIONS -ffp-contract=off)
  endif()
  set(SLIMNN_ISA_LIBS ${SLIMNN_ISA_LIBS} PARENT_SCOPE)
endfunction()
