# The GPU kernels for NVIDIA GPUs, as one CMake OBJECT library: every
# kernels/*.metal compiled by nvcc through the MSL-on-CUDA shim
# (csrc/harness/gen_bindings.py --target cuda rewrites a copy of each shader
# and writes a .cu that registers its __global__ entries, csrc/harness/cuda/
# entry.cuh) and every hand-written csrc/gpu/cuda/kernels/*.cu. Both register
# their kernels by host name in bnc's registry (csrc/harness/cuda/registry.h).
# Shared by the CUDA target of the shader harness (csrc/harness/cuda) and the
# MLX CUDA backend of the package (cmake/cuda.cmake).
#
#   bitnet_ext_cuda_kernels(<target> <repository root> <python executable>)
#
# The objects hold only static registrations: link them into the final
# module directly ($<TARGET_OBJECTS:<target>>), never through a static
# library, whose unreferenced members the linker drops.
#
# -fmad=false: no contraction of a * b + c (the metallib's -fno-fast-math; the
# bit-exact paths depend on it). -lineinfo: sanitizer reports name source lines.
#
# Sets BITNET_EXT_CUDA_WGMMA in the caller's scope: ON when the kernels include sm_90a code.

function(bitnet_ext_cuda_kernels target root python)
  set(harness_dir ${root}/csrc/harness)
  set(shim_dir ${harness_dir}/cuda)
  set(gen_dir ${CMAKE_CURRENT_BINARY_DIR}/${target}_gen)

  file(GLOB metal_sources CONFIGURE_DEPENDS ${root}/kernels/*.metal)
  file(GLOB kernel_headers CONFIGURE_DEPENDS ${root}/kernels/*.h)
  file(GLOB handwritten CONFIGURE_DEPENDS ${root}/csrc/gpu/cuda/kernels/*.cu)

  # The rewritten copies of kernels/*.h, then one .cu (and rewritten .metal) per .metal.
  set(gen_headers)
  foreach(h ${kernel_headers})
    get_filename_component(name ${h} NAME)
    add_custom_command(
      OUTPUT ${gen_dir}/${name}
      COMMAND ${python} ${harness_dir}/gen_bindings.py --target cuda ${h} ${gen_dir}
      DEPENDS ${h} ${harness_dir}/gen_bindings.py
      VERBATIM)
    list(APPEND gen_headers ${gen_dir}/${name})
  endforeach()
  set(units)
  foreach(src ${metal_sources})
    get_filename_component(stem ${src} NAME_WE)
    add_custom_command(
      OUTPUT ${gen_dir}/${stem}.cu ${gen_dir}/${stem}.metal
      COMMAND ${python} ${harness_dir}/gen_bindings.py --target cuda ${src} ${gen_dir}
      DEPENDS ${src} ${harness_dir}/gen_bindings.py
      COMMENT "CUDA bindings for ${stem}.metal"
      VERBATIM)
    set_source_files_properties(${gen_dir}/${stem}.cu PROPERTIES
      OBJECT_DEPENDS "${gen_dir}/${stem}.metal;${gen_headers};${shim_dir}/msl_cuda.h;${shim_dir}/entry.cuh")
    list(APPEND units ${gen_dir}/${stem}.cu)
  endforeach()

  add_library(${target} OBJECT ${units} ${handwritten})
  target_include_directories(${target} PRIVATE ${gen_dir} ${shim_dir} ${shim_dir}/include ${harness_dir} ${root}/csrc)
  target_compile_options(${target} PRIVATE -fmad=false -lineinfo --expt-relaxed-constexpr
                                           -Xcudafe --diag_suppress=177)
  set_target_properties(${target} PROPERTIES
    CUDA_STANDARD 20
    CUDA_STANDARD_REQUIRED ON
    POSITION_INDEPENDENT_CODE ON)
  # Hopper (9.0) as 90a: the arch-specific code the wgmma GEMMs need (kernels/wgmma_gemm.cuh; CMake >= 3.25
  # knows the suffix). Other targets get those kernels as traps, and the plans never choose them there:
  # BITNET_EXT_CUDA_WGMMA (set here for the caller) defines the same name for launch_plan_cuda.cpp.
  set(archs ${CMAKE_CUDA_ARCHITECTURES})
  list(TRANSFORM archs REPLACE "^90(-real|-virtual)?$" "90a\\1")
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES "${archs}")
  if(archs MATCHES "90a")
    set(BITNET_EXT_CUDA_WGMMA ON PARENT_SCOPE)
  else()
    set(BITNET_EXT_CUDA_WGMMA OFF PARENT_SCOPE)
  endif()
endfunction()
