// Finding bitnet_ext's Metal kernels at run time: the precompiled
// bitnet_ext.metallib next to the extension, or (kernel developers' mode,
// BITNET_EXT_METAL_JIT) the kernels/*.metal sources compiled by MLX's Metal
// device when first used. See docs/metal_backend.md.
//
// UNVERIFIED: written from MLX 0.32.4's headers and sources on Linux; it has
// not been compiled or run on a Mac (see docs/metal_backend.md).
#pragma once

#ifdef _METAL_

#include <string>
#include <vector>

#include "mlx/backend/metal/device.h"

namespace bitnet_ext::metal {

namespace mx = mlx::core;

// Directory of the binary holding this code (the _ext module), found with
// dladdr. bitnet_ext.metallib is built and installed there.
const std::string& current_binary_dir();

// The settings of the run-time compilation mode, read once from the environment:
//   BITNET_EXT_METAL_JIT            unset, "", 0, false, off, no: use the metallib.
//                                   1, true, on, yes: compile the sources of the
//                                   source tree this was built from (if it still
//                                   exists), else <binary dir>/kernels (installed
//                                   with the wheel).
//                                   anything else: a kernels directory to compile.
//   BITNET_EXT_METAL_JIT_INCLUDE    extra include directories (':'-separated),
//                                   searched after the kernels directory and its
//                                   parent and before MLX's include directory.
//   BITNET_EXT_METALLIB             (metallib mode) a .metallib to load instead of
//                                   <binary dir>/bitnet_ext.metallib.
struct KernelSource {
  bool jit = false;
  std::string kernels_dir; // JIT: the directory of *.metal files
  std::vector<std::string> include_dirs; // JIT: search path for #include "..."
  std::string metallib; // metallib mode: the file loaded
};
const KernelSource& kernel_source();

// The compute pipeline of the kernel whose [[host_name]] is `name`, from the
// metallib or, in JIT mode, from the kernels/ sources (compiled on first use;
// `source_hint`, a file name like "gemv.metal", says which file to compile
// first). Pipelines are cached by MLX's device. Throws std::runtime_error with
// the file names involved when the library or the kernel cannot be found.
MTL::ComputePipelineState* get_kernel(
    mx::metal::Device& d,
    const std::string& name,
    const std::string& source_hint = "");

} // namespace bitnet_ext::metal

#endif // _METAL_
