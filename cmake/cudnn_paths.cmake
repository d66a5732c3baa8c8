# MLX's CMake config, in MLX's CUDA build, requires cuDNN (find_dependency(CUDNN)):
# point it at the cuDNN that pip installed with mlx[cuda13] (the nvidia-cudnn-cu13
# wheel: site-packages/nvidia/cudnn/{include,lib}) unless CUDNN_INCLUDE_PATH /
# CUDNN_LIBRARY_PATH are given. Included before find_package(MLX); sets nothing
# when no such wheel is installed (a CPU-only MLX never asks for cuDNN).
if(DEFINED CUDNN_INCLUDE_PATH OR DEFINED CUDNN_LIBRARY_PATH)
  return()
endif()
execute_process(
  COMMAND "${Python_EXECUTABLE}" -c
          "import importlib.util as u; s = u.find_spec('nvidia.cudnn'); print(list(s.submodule_search_locations)[0] if s else '')"
  OUTPUT_VARIABLE _bitnet_cudnn_dir
  OUTPUT_STRIP_TRAILING_WHITESPACE
  ERROR_QUIET)
if(_bitnet_cudnn_dir AND EXISTS "${_bitnet_cudnn_dir}/include/cudnn.h")
  set(CUDNN_INCLUDE_PATH "${_bitnet_cudnn_dir}/include" CACHE PATH "cuDNN headers (from the nvidia-cudnn wheel)")
  set(CUDNN_LIBRARY_PATH "${_bitnet_cudnn_dir}/lib" CACHE PATH "cuDNN libraries (from the nvidia-cudnn wheel)")
  message(STATUS "bitnet_ext: cuDNN from ${_bitnet_cudnn_dir}")
endif()
