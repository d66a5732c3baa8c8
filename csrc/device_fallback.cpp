#include "device_fallback.h"

#include <atomic>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <variant>

#include "mlx/device.h"

namespace bitnet_ext {

namespace {

std::atomic<bool> pretend_gpu_backend{false};
std::mutex handler_mutex;
std::atomic<bool> printed{false};
std::function<void(const std::string&)> warning_handler = [](const std::string& m) {
  if (!printed.exchange(true)) {
    std::cerr << "[bitnet_ext] warning: " << m << " (shown once)" << std::endl;
  }
};

void warn_fallback(const char* op_name) {
  std::string message = std::string(op_name) +
      ": bitnet_ext has no kernels for this MLX GPU backend; running on the CPU instead.";
  std::function<void(const std::string&)> handler;
  {
    std::lock_guard<std::mutex> lock(handler_mutex);
    handler = warning_handler;
  }
  handler(message); // may throw (warnings as errors): then the op is not built
}

} // namespace

bool has_gpu_kernels() {
#ifdef BITNET_EXT_METAL
  // Metal builds (cmake/metal.cmake): our kernels serve MLX's Metal GPU, the
  // only GPU backend such an MLX has. mx::is_available also says no when the
  // Metal backend is built but the machine has no Metal device (headless or
  // virtualized macOS), where MLX itself runs on the CPU. A missing
  // bitnet_ext.metallib is reported loudly at the first GPU eval
  // (csrc/gpu/metal/library.cpp), not hidden behind the CPU fallback.
  return mx::is_available(mx::Device(mx::Device::gpu));
#elif defined(BITNET_EXT_CUDA)
  // CUDA builds (cmake/cuda.cmake): our kernels serve MLX's CUDA GPU, the
  // only GPU backend such an MLX has; without a usable NVIDIA GPU MLX itself
  // reports none.
  return mx::is_available(mx::Device(mx::Device::gpu));
#else
  return false;
#endif
}

mx::Device requested_device(mx::StreamOrDevice s) {
  if (auto* stream = std::get_if<mx::Stream>(&s)) {
    return stream->device;
  }
  if (auto* device = std::get_if<mx::Device>(&s)) {
    return *device;
  }
  return mx::default_device();
}

mx::Stream resolve_stream(mx::StreamOrDevice s, const char* op_name) {
  const mx::Device requested = requested_device(s);
  if (requested.type == mx::Device::gpu && !has_gpu_kernels()) {
    if (!pretend_gpu_backend.load() && !mx::is_available(mx::Device(mx::Device::gpu))) {
      // What MLX's own ops do (ValueError from mx.default_stream), said plainly.
      throw std::invalid_argument(
          std::string(op_name) +
          ": stream=mx.gpu, but this MLX has no GPU backend (mx.is_available(mx.gpu) is False); "
          "use stream=mx.cpu or leave stream unset.");
    }
    warn_fallback(op_name);
    return mx::default_stream(mx::Device::cpu);
  }
  return mx::to_stream(s);
}

void pretend_gpu_backend_for_testing(bool on) {
  pretend_gpu_backend.store(on);
}

void set_fallback_warning_handler(std::function<void(const std::string&)> f) {
  std::lock_guard<std::mutex> lock(handler_mutex);
  warning_handler = std::move(f);
}

} // namespace bitnet_ext
