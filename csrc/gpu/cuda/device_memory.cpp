// See device_memory.h.
#ifdef BITNET_EXT_CUDA

#include "gpu/cuda/device_memory.h"

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlx/allocator.h"
#include "mlx/backend/cuda/allocator.h"

namespace bitnet_ext::cuda {

namespace {

// Sizes are rounded as MLX rounds them (powers of two below its 16 KiB page,
// whole pages above), so that a model's few distinct sizes reuse each other.
constexpr size_t kPage = 16384;
constexpr size_t kMinBytes = 256;
// Freed buffers kept for reuse, in bytes (beyond this they go back to the pool).
constexpr size_t kCacheLimit = size_t(1) << 30;

size_t rounded(size_t bytes) {
  if (bytes >= kPage) {
    return (bytes + kPage - 1) / kPage * kPage;
  }
  size_t r = kMinBytes;
  while (r < bytes) {
    r *= 2;
  }
  return r;
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(
        std::string("bitnet_ext: ") + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
}

class DeviceCache {
 public:
  void* take(int device, size_t bytes, cudaStream_t stream) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto& list = free_[{device, bytes}];
      if (!list.empty()) {
        void* p = list.back();
        list.pop_back();
        cached_ -= bytes;
        return p;
      }
    }
    // Stream-ordered, from the device's default pool (as MLX's own device
    // buffers): MLX may free it with cudaFreeAsync when it moves the data
    // to unified memory.
    void* p = nullptr;
    check(cudaMallocAsync(&p, bytes, stream), "cudaMallocAsync of an output");
    return p;
  }

  void give_back(int device, void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cached_ + bytes > kCacheLimit) {
      // Not the caller's stream (unknown here): the device's legacy stream.
      cudaFreeAsync(p, nullptr);
      return;
    }
    free_[{device, bytes}].push_back(p);
    cached_ += bytes;
  }

  size_t cached() {
    std::lock_guard<std::mutex> lock(mutex_);
    return cached_;
  }

 private:
  std::mutex mutex_;
  std::map<std::pair<int, size_t>, std::vector<void*>> free_;
  size_t cached_ = 0;
};

DeviceCache& cache() {
  static auto* c = new DeviceCache; // leaked: buffers may be freed until process exit
  return *c;
}

void release(mx::allocator::Buffer b) {
  auto* buf = static_cast<mx::cu::CudaBuffer*>(const_cast<void*>(b.ptr()));
  if (buf == nullptr) {
    return;
  }
  if (buf->device < 0) {
    // MLX moved it to unified memory (the host read it) and already freed
    // our device pointer; the unified copy is MLX's cudaMallocManaged memory.
    cudaFree(buf->data);
  } else {
    cache().give_back(buf->device, buf->data, buf->size);
  }
  delete buf;
}

} // namespace

void set_device_data(mx::array& a, size_t bytes, mx::cu::CommandEncoder& enc) {
  if (bytes == 0) {
    a.set_data(mx::allocator::malloc(0));
    return;
  }
  const int device = enc.device().cuda_device();
  const size_t size = rounded(bytes);
  void* p = cache().take(device, size, enc.stream());
  a.set_data(mx::allocator::Data(mx::allocator::Buffer(new mx::cu::CudaBuffer{p, size, device}), release));
}

size_t cached_device_bytes() {
  return cache().cached();
}

} // namespace bitnet_ext::cuda

#endif // BITNET_EXT_CUDA
