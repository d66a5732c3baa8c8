# CUDA backend of bitnet_ext (NVIDIA GPUs, through MLX's CUDA build:
# pip's mlx[cuda13]).
#
# Included by the top-level CMakeLists.txt right after find_package(MLX), at
# file scope (enable_language must not run inside a function):
#
#   include(cmake/cuda.cmake)          # sets BITNET_EXT_CUDA
#   ... add_library(bitnet_primitives ...) ...
#   if(BITNET_EXT_CUDA)
#     bitnet_ext_add_cuda_backend(bitnet_primitives _ext)
#   endif()
#
# MLX has no MLX_BUILD_CUDA variable: its CUDA build is recognised by the
# imported mlx target, which names CUDA::cuda_driver among the libraries
# libmlx depends on. Without it this file only sets BITNET_EXT_CUDA to OFF:
# the CPU-only build is unchanged.
#
# With it:
#   * CUDA is enabled for CMAKE_CUDA_ARCHITECTURES: when unset (and CUDAARCHS
#     is unset), the compute capabilities of the GPUs nvidia-smi lists on this
#     machine, else a list covering Turing to Blackwell;
#   * the kernels (cmake/cuda_kernels.cmake: kernels/*.metal through the
#     MSL-on-CUDA shim and csrc/gpu/cuda/kernels/*.cu) plus the zero-fill
#     kernel are compiled by nvcc into an OBJECT library linked into _ext;
#   * the executor (csrc/gpu/cuda/*.cpp, host C++ including MLX's CUDA
#     headers) and the CUDA plan functions are added to bitnet_primitives,
#     BITNET_EXT_CUDA is defined (publicly: device_fallback.cpp and
#     eval_gpu.cpp read it), and the CUDA runtime is linked statically (our
#     own: libmlx's is hidden inside libmlx).

set(BITNET_EXT_CUDA OFF)
get_target_property(_bitnet_mlx_deps mlx IMPORTED_LINK_DEPENDENT_LIBRARIES_RELEASE)
if(NOT _bitnet_mlx_deps MATCHES "CUDA::cuda_driver")
  message(STATUS "bitnet_ext: MLX has no CUDA backend; no CUDA kernels in this build")
  return()
endif()
set(BITNET_EXT_CUDA ON)

if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES AND NOT DEFINED ENV{CUDAARCHS})
  execute_process(
    COMMAND nvidia-smi --query-gpu=compute_cap --format=csv,noheader
    OUTPUT_VARIABLE _bitnet_caps
    RESULT_VARIABLE _bitnet_smi
    ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE)
  set(_bitnet_archs)
  if(_bitnet_smi EQUAL 0)
    string(REPLACE "\n" ";" _bitnet_caps "${_bitnet_caps}")
    foreach(cap ${_bitnet_caps})
      string(REPLACE "." "" cap "${cap}")
      string(STRIP "${cap}" cap)
      if(cap MATCHES "^[0-9]+$")
        list(APPEND _bitnet_archs ${cap})
      endif()
    endforeach()
    list(REMOVE_DUPLICATES _bitnet_archs)
  endif()
  if(NOT _bitnet_archs)
    set(_bitnet_archs 75 80 86 89 90 100 120)
  endif()
  set(CMAKE_CUDA_ARCHITECTURES "${_bitnet_archs}" CACHE STRING "GPU architectures of bitnet_ext's CUDA kernels")
endif()
# The nvcc of the toolkit MLX's CMake config found (not another one on PATH).
if(NOT CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
  set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}")
endif()
enable_language(CUDA)
message(STATUS "bitnet_ext: MLX has a CUDA backend; CUDA kernels for architectures ${CMAKE_CUDA_ARCHITECTURES} "
               "(nvcc ${CMAKE_CUDA_COMPILER_VERSION})")

include(${CMAKE_CURRENT_LIST_DIR}/cuda_kernels.cmake)

# bitnet_ext_add_cuda_backend(<primitives library> <python module>)
function(bitnet_ext_add_cuda_backend primitives module)
  set(root ${PROJECT_SOURCE_DIR})
  bitnet_ext_cuda_kernels(bitnet_cuda_kernels ${root} ${Python_EXECUTABLE})
  target_sources(bitnet_cuda_kernels PRIVATE ${root}/csrc/gpu/cuda/zero_fill.cu)
  # MLX's headers come with none of these warnings suppressed in nvcc.
  target_compile_options(bitnet_cuda_kernels PRIVATE --diag-suppress=27,997,1394,20011,20208)

  target_sources(
    ${primitives}
    PRIVATE ${root}/csrc/gpu/cuda/device_memory.cpp
            ${root}/csrc/gpu/cuda/eval_gpu_cuda.cpp
            ${root}/csrc/gpu/cuda/run_plan.cpp
            ${root}/csrc/gpu/launch_plan_cuda.cpp
            ${root}/csrc/harness/cuda/launch_args.cpp
            ${root}/csrc/harness/cuda/registry.cpp)
  target_compile_definitions(${primitives} PUBLIC BITNET_EXT_CUDA)
  if(BITNET_EXT_CUDA_WGMMA)
    target_compile_definitions(${primitives} PRIVATE BITNET_EXT_CUDA_WGMMA)
  endif()
  # fmt_shim first: MLX's CUDA headers include <fmt/format.h>, which the
  # mlx-cuda wheel does not ship (csrc/gpu/cuda/fmt_shim/fmt/format.h).
  target_include_directories(
    ${primitives} BEFORE
    PRIVATE ${root}/csrc/gpu/cuda/fmt_shim ${root}/csrc/harness/cuda ${root}/csrc/harness)
  target_link_libraries(${primitives} PUBLIC CUDA::cudart_static)
  target_link_libraries(${primitives} PRIVATE CUDA::toolkit)

  target_sources(${module} PRIVATE $<TARGET_OBJECTS:bitnet_cuda_kernels>)
  # The module's own C++ library, bound inside it: on the NVIDIA GPU machine
  # this was tested on (Python 3.12, mlx-cuda 0.32.4 loaded first), the
  # module's std::ostringstream crashed while the C++ library symbols it used
  # resolved to those already loaded, so every error message built with it
  # (arg_checks.cpp) segfaulted (the shader harness's module saw the same,
  # csrc/harness/cuda). Objects shared with libmlx are plain library types of
  # the same ABI on the same heap. libgcc stays shared: exceptions thrown by
  # our code through libmlx's frames (e.g. a shape error raised while
  # mx.compile re-derives shapes) need the process's one unwinder; with a
  # static copy as well, such a throw aborted.
  target_link_options(${module} PRIVATE -static-libstdc++ -Wl,-Bsymbolic -Wl,--exclude-libs,ALL)
endfunction()
