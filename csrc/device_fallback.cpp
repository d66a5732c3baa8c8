#include "device_fallback.h"

#include <atomic>
#include <iostream>
#include <mutex>
#include <variant>

#include "mlx/device.h"

namespace bitnet_ext {

namespace {

std::mutex handler_mutex;
std::function<void(const std::string&)> warning_handler = [](const std::string& m) {
  std::cerr << "[bitnet_ext] warning: " << m << std::endl;
};
std::atomic<bool> warned{false};

void warn_once(const char* op_name) {
  if (warned.exchange(true)) {
    return;
  }
  std::string message = std::string(op_name) +
      ": bitnet_ext has no kernels for this MLX GPU backend; running on the "
      "CPU instead (this warning is shown once).";
  std::lock_guard<std::mutex> lock(handler_mutex);
  warning_handler(message);
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
#else
  return false;
#endif
}

mx::Stream resolve_stream(mx::StreamOrDevice s, const char* op_name) {
  mx::Device requested = mx::default_device();
  if (auto* stream = std::get_if<mx::Stream>(&s)) {
    requested = stream->device;
  } else if (auto* device = std::get_if<mx::Device>(&s)) {
    requested = *device;
  }
  if (requested.type == mx::Device::gpu && !has_gpu_kernels()) {
    warn_once(op_name);
    return mx::default_stream(mx::Device::cpu);
  }
  return mx::to_stream(s);
}

void set_fallback_warning_handler(std::function<void(const std::string&)> f) {
  std::lock_guard<std::mutex> lock(handler_mutex);
  warning_handler = std::move(f);
}

} // namespace bitnet_ext
