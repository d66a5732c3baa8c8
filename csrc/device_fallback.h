// Choosing the stream an op runs on.
//
// The extension has kernels for the CPU everywhere and (in a Metal build) for
// Apple GPUs. When a caller asks for a GPU this build has no kernels for
// (e.g. an MLX CUDA backend, or a Linux mlx-cpu install), the op runs on the
// CPU instead and warns once: a slower answer beats a crash.
#pragma once

#include <functional>
#include <string>

#include "mlx/stream.h"
#include "mlx/utils.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// Whether this build has GPU kernels for the MLX GPU backend it runs on.
bool has_gpu_kernels();

// The stream to run on: the requested one, or the CPU's default stream when
// the request names a GPU without kernels here (warning once per process).
mx::Stream resolve_stream(mx::StreamOrDevice s, const char* op_name);

// Where the one-time fallback warning goes. The Python bindings route it to
// warnings.warn(RuntimeWarning); the default prints to stderr.
void set_fallback_warning_handler(std::function<void(const std::string&)> f);

} // namespace bitnet_ext
