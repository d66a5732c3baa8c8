// Choosing the stream an op runs on.
//
// The extension has kernels for the CPU everywhere, for Apple GPUs in a Metal
// build and for NVIDIA GPUs in a CUDA build (one built against MLX's CUDA
// backend). A request for a GPU gets one of three answers:
// - this MLX has no usable GPU at all (a Linux mlx-cpu install, or a Metal or
//   CUDA build on a machine without such a GPU): ValueError, as plain MLX
//   raises for its own ops;
// - this MLX has a GPU backend our build has no kernels for (e.g. this
//   package built against mlx-cpu, then run with MLX's CUDA backend): the
//   op runs on the CPU and warns, on every such call (the Python warnings
//   filter decides what is shown; with warnings as errors every call raises);
// - our GPU kernels serve it: the GPU stream.
#pragma once

#include <functional>
#include <string>

#include "mlx/stream.h"
#include "mlx/utils.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// Whether this build has GPU kernels for the MLX GPU backend it runs on.
bool has_gpu_kernels();

// The device a stream-or-device argument names (the default device when it
// names none), before any fallback.
mx::Device requested_device(mx::StreamOrDevice s);

// The stream to run on (see above). Throws std::invalid_argument when the
// request names a GPU this MLX does not have.
mx::Stream resolve_stream(mx::StreamOrDevice s, const char* op_name);

// Where the CPU-fallback warning goes; called on every fallback. The Python
// bindings route it to warnings.warn(RuntimeWarning) (and throw when the
// warnings filter turns it into an error); the default prints to stderr
// once per process.
void set_fallback_warning_handler(std::function<void(const std::string&)> f);

// Tests only: answer as if this MLX had a GPU backend that our build has no
// kernels for (e.g. a CPU-only build run with MLX's CUDA backend), so that
// the CPU-fallback path (warning and all) runs on a CPU-only machine. The ops still run on the CPU stream.
void pretend_gpu_backend_for_testing(bool on);

} // namespace bitnet_ext
