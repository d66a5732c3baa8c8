# Metal backend of bitnet_ext (Apple GPUs).
#
# Included by the top-level CMakeLists.txt right after the bitnet_primitives
# target is defined (it adds sources and definitions to that target):
#
#   include(cmake/metal.cmake)
#
# Without MLX's Metal backend (Linux, or an MLX built with MLX_BUILD_METAL=OFF)
# this file does nothing: csrc/gpu/eval_gpu.cpp keeps the "no GPU kernels"
# eval_gpu and the ops fall back to the CPU (csrc/device_fallback.h).
#
# With it:
#   * every kernels/*.metal is compiled by `xcrun -sdk macosx metal` with
#     warnings as errors (MLX's mlx_build_metallib, share/cmake/MLX/extension.cmake
#     of the mlx wheel) and linked into bitnet_ext.metallib, written next to the
#     _ext module in the build tree and installed next to it in the wheel
#     (bitnet_ext/bitnet_ext.metallib), where csrc/gpu/metal/library.cpp finds it;
#   * the Metal host code (csrc/gpu/metal/*.cpp) is added to bitnet_primitives
#     and BITNET_EXT_METAL is defined (publicly: device_fallback.cpp and
#     eval_gpu.cpp read it);
#   * the shader sources are installed too (bitnet_ext/kernels/), so the run-time
#     compilation mode (BITNET_EXT_METAL_JIT=1, docs/metal_backend.md) also works
#     from an installed wheel.
#
# Options (cache variables, e.g. -Cmetal... or CMAKE_ARGS="-D...=..."):
#   BITNET_EXT_METAL_WERROR             ON   metal -Werror
#   BITNET_EXT_METAL_DEPLOYMENT_TARGET  ""   macOS version the metallib targets
#                                             (default: CMAKE_OSX_DEPLOYMENT_TARGET,
#                                             which scikit-build-core takes from
#                                             MACOSX_DEPLOYMENT_TARGET)
#   BITNET_EXT_INSTALL_METAL_SOURCES    ON   install kernels/ into the wheel
#
# Not verified on a Mac from the machine this was written on (Linux): see
# docs/metal_backend.md, "What has been verified where".

if(NOT MLX_BUILD_METAL)
  message(STATUS "bitnet_ext: MLX has no Metal backend; no GPU kernels in this build")
  return()
endif()

if(NOT TARGET bitnet_primitives)
  message(FATAL_ERROR "cmake/metal.cmake must be included after the bitnet_primitives target is defined")
endif()

if(NOT COMMAND mlx_build_metallib)
  message(FATAL_ERROR "bitnet_ext: MLX_BUILD_METAL is on but mlx_build_metallib is missing "
                      "(find_package(MLX) should have loaded share/cmake/MLX/extension.cmake)")
endif()

option(BITNET_EXT_METAL_WERROR "Compile the Metal shaders with -Werror" ON)
set(BITNET_EXT_METAL_DEPLOYMENT_TARGET "" CACHE STRING
    "macOS deployment target of bitnet_ext.metallib (empty: CMAKE_OSX_DEPLOYMENT_TARGET)")
option(BITNET_EXT_INSTALL_METAL_SOURCES "Install kernels/ (for BITNET_EXT_METAL_JIT) into the wheel" ON)

set(BITNET_EXT_KERNELS_DIR "${PROJECT_SOURCE_DIR}/kernels")

# ----------------------------- Shaders -> bitnet_ext.metallib -----------------------------

file(GLOB BITNET_EXT_METAL_SOURCES CONFIGURE_DEPENDS "${BITNET_EXT_KERNELS_DIR}/*.metal")
file(GLOB_RECURSE BITNET_EXT_METAL_HEADERS CONFIGURE_DEPENDS "${BITNET_EXT_KERNELS_DIR}/*.h")
list(SORT BITNET_EXT_METAL_SOURCES)
if(NOT BITNET_EXT_METAL_SOURCES)
  message(FATAL_ERROR "bitnet_ext: MLX has Metal but ${BITNET_EXT_KERNELS_DIR} holds no .metal files")
endif()

# MLX's own headers (a shader may include mlx/backend/metal/kernels/*.h), as
# MLX's axpby example passes them. MLX_INCLUDE_DIRS has empty entries and, on
# Macs, metal_cpp (C++ only) and a metal_3_x directory that may not exist.
# (They are plain -I directories, so -Werror also covers MLX headers a shader
# includes; today no shader includes any.)
set(_bitnet_metal_mlx_includes)
foreach(_dir IN LISTS MLX_INCLUDE_DIRS)
  if(_dir STREQUAL "" OR _dir MATCHES "metal_cpp/?$" OR NOT IS_DIRECTORY "${_dir}")
    continue()
  endif()
  list(APPEND _bitnet_metal_mlx_includes "${_dir}")
endforeach()
list(GET MLX_INCLUDE_DIRS 0 BITNET_EXT_MLX_INCLUDE_DIR)

set(_bitnet_metal_options)
if(BITNET_EXT_METAL_WERROR)
  list(APPEND _bitnet_metal_options -Werror)
endif()

# Next to the _ext module (nanobind_add_module puts it in this binary dir
# unless CMAKE_LIBRARY_OUTPUT_DIRECTORY says otherwise).
if(CMAKE_LIBRARY_OUTPUT_DIRECTORY)
  set(BITNET_EXT_METALLIB_DIR "${CMAKE_LIBRARY_OUTPUT_DIRECTORY}")
else()
  set(BITNET_EXT_METALLIB_DIR "${CMAKE_CURRENT_BINARY_DIR}")
endif()

set(_bitnet_metal_deployment)
if(BITNET_EXT_METAL_DEPLOYMENT_TARGET)
  set(_bitnet_metal_deployment DEPLOYMENT_TARGET ${BITNET_EXT_METAL_DEPLOYMENT_TARGET})
endif()

mlx_build_metallib(
  TARGET bitnet_ext_metallib
  TITLE bitnet_ext
  SOURCES ${BITNET_EXT_METAL_SOURCES}
  INCLUDE_DIRS ${BITNET_EXT_KERNELS_DIR} ${PROJECT_SOURCE_DIR} ${_bitnet_metal_mlx_includes}
  DEPS ${BITNET_EXT_METAL_HEADERS}
  COMPILE_OPTIONS ${_bitnet_metal_options}
  OUTPUT_DIRECTORY ${BITNET_EXT_METALLIB_DIR}
  ${_bitnet_metal_deployment})

add_dependencies(bitnet_primitives bitnet_ext_metallib)

list(LENGTH BITNET_EXT_METAL_SOURCES _bitnet_metal_count)
message(STATUS "bitnet_ext: Metal kernels: ${_bitnet_metal_count} shader file(s) -> "
               "${BITNET_EXT_METALLIB_DIR}/bitnet_ext.metallib")

# ----------------------------- Host code -----------------------------

target_sources(
  bitnet_primitives
  PRIVATE ${PROJECT_SOURCE_DIR}/csrc/gpu/metal/library.cpp
          ${PROJECT_SOURCE_DIR}/csrc/gpu/metal/jit_source.cpp
          ${PROJECT_SOURCE_DIR}/csrc/gpu/metal/dispatch.cpp
          ${PROJECT_SOURCE_DIR}/csrc/gpu/metal/eval_gpu_metal.cpp)

# The launch plans (csrc/gpu/launch_plan.cpp) are shared with the CPU shader
# harness. Compile them here unless bitnet_primitives, or a target it links,
# already does.
set(_bitnet_plan_built FALSE)
get_target_property(_bitnet_libs bitnet_primitives LINK_LIBRARIES)
foreach(_tgt IN ITEMS bitnet_primitives ${_bitnet_libs})
  if(NOT TARGET ${_tgt})
    continue()
  endif()
  get_target_property(_type ${_tgt} TYPE)
  if(_type STREQUAL "INTERFACE_LIBRARY")
    continue()
  endif()
  get_target_property(_srcs ${_tgt} SOURCES)
  foreach(_src IN LISTS _srcs)
    if(_src MATCHES "launch_plan\\.cpp$")
      set(_bitnet_plan_built TRUE)
    endif()
  endforeach()
endforeach()
if(NOT _bitnet_plan_built)
  target_sources(bitnet_primitives PRIVATE ${PROJECT_SOURCE_DIR}/csrc/gpu/launch_plan.cpp)
endif()

# MLX's target already brings -D_METAL_ and metal-cpp's include directory to
# Metal builds; BITNET_EXT_METAL says "this build has bitnet_ext's Metal kernels".
target_compile_definitions(bitnet_primitives PUBLIC BITNET_EXT_METAL=1)
set_source_files_properties(
  ${PROJECT_SOURCE_DIR}/csrc/gpu/metal/library.cpp
  PROPERTIES COMPILE_DEFINITIONS
             "BITNET_EXT_KERNELS_SOURCE_DIR=\"${BITNET_EXT_KERNELS_DIR}\";BITNET_EXT_MLX_INCLUDE_DIR=\"${BITNET_EXT_MLX_INCLUDE_DIR}\"")

# ----------------------------- Install (into the wheel's bitnet_ext/) -----------------------------

install(FILES "${BITNET_EXT_METALLIB_DIR}/bitnet_ext.metallib" DESTINATION bitnet_ext)
if(BITNET_EXT_INSTALL_METAL_SOURCES)
  install(
    DIRECTORY "${BITNET_EXT_KERNELS_DIR}/"
    DESTINATION bitnet_ext/kernels
    FILES_MATCHING
    PATTERN "*.metal"
    PATTERN "*.h")
endif()
