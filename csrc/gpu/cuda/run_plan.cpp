// See run_plan.h.
#ifdef BITNET_EXT_CUDA

#include "gpu/cuda/run_plan.h"

#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>

#include "gpu/cuda/device_memory.h"
#include "gpu/cuda/zero_fill.h"
#include "gpu/plan_arrays.h"
#include "launch_args.h"
#include "mlx/backend/cuda/device.h"
#include "mlx/backend/cuda/utils.h"
#include "registry.h"

namespace bitnet_ext::cuda {

namespace {

void check(cudaError_t e, const char* op, const std::string& what) {
  if (e != cudaSuccess) {
    throw std::runtime_error(
        std::string("bitnet_ext: ") + op + ": " + what + ": " + cudaGetErrorName(e) + " (" +
        cudaGetErrorString(e) + ")");
  }
}

// A registered kernel as a driver function of one device's primary context
// (the context MLX's graphs run in): what add_kernel_node_raw takes. Our
// module links its own CUDA runtime; libmlx's is hidden, so a host stub
// pointer means nothing to MLX, a CUfunction does.
struct Kernel {
  const bnc::KernelInfo* info = nullptr;
  CUfunction function = nullptr;
  // Dynamic shared memory allowed so far: the default 48 KiB less the kernel's static shared
  // memory, so any dynamic size gets an explicit opt-in once.
  size_t shared_limit_set = 0;
};

class KernelCache {
 public:
  Kernel& get(int device, const std::string& name, const char* op) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto key = std::make_pair(device, name);
    if (auto it = kernels_.find(key); it != kernels_.end()) {
      return it->second;
    }
    const bnc::KernelInfo* info = bnc::find_kernel(name);
    if (!info) {
      throw std::logic_error(
          std::string("bitnet_ext: ") + op + ": the launch plan names kernel '" + name +
          "', which this build does not contain");
    }
    cudaFunction_t f = nullptr;
    check(cudaGetFuncBySymbol(&f, info->entry), op, "cudaGetFuncBySymbol of " + name);
    return kernels_.emplace(key, Kernel{info, reinterpret_cast<CUfunction>(f)}).first->second;
  }

  // Lets `k` use `bytes` of dynamic shared memory (past 48 KiB with its static
  // shared memory, CUDA asks for an opt-in per function).
  void allow_shared(Kernel& k, size_t bytes, const char* op) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (bytes > k.shared_limit_set) {
      check(cudaFuncSetAttribute(k.info->entry, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)), op,
            "raising the shared memory limit of " + k.info->name);
      k.shared_limit_set = bytes;
    }
  }

 private:
  std::mutex mutex_;
  std::map<std::pair<int, std::string>, Kernel> kernels_;
};

KernelCache& kernel_cache() {
  static auto* cache = new KernelCache; // leaked: used until process exit
  return *cache;
}

// Per device: the opt-in shared memory limit per block, and 256 bytes that a
// kernel gets for an empty array (never read: the plans do not index empty
// arrays, but every bound slot holds a valid pointer).
struct DeviceInfo {
  size_t max_shared = 0;
  void* empty = nullptr;
};

const DeviceInfo& device_info(int device, const char* op) {
  static std::mutex mutex;
  static auto* infos = new std::map<int, DeviceInfo>;
  std::lock_guard<std::mutex> lock(mutex);
  auto& d = (*infos)[device];
  if (d.empty == nullptr) {
    int bytes = 0;
    check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device), op,
          "cudaDeviceGetAttribute");
    d.max_shared = size_t(bytes);
    check(cudaMalloc(&d.empty, 256), op, "cudaMalloc of 256 bytes");
  }
  return d;
}

void* device_pointer(const mx::array& a, const DeviceInfo& d) {
  return a.nbytes() == 0 ? d.empty : const_cast<void*>(mx::gpu_ptr<void>(a));
}

} // namespace

mx::array ensure_row_contiguous(const mx::array& a, const mx::Stream& s) {
  auto copy = gpu::row_contiguous_copy(a, s);
  if (!copy) {
    return a;
  }
  mx::cu::get_command_encoder(s).add_temporary(*copy);
  return *copy;
}

void run_plan(
    const char* op,
    const gpu::LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s) {
  auto& enc = mx::cu::get_command_encoder(s);
  const int device = enc.device().cuda_device();
  // Our CUDA runtime's current device: the primary context MLX runs in.
  check(cudaSetDevice(device), op, "cudaSetDevice");
  // Device memory, not mx::allocator::malloc's unified memory (device_memory.h says why);
  // BITNET_EXT_CUDA_MLX_MALLOC=1 takes MLX's (for measuring the difference).
  static const bool mlx_malloc = [] {
    const char* v = std::getenv("BITNET_EXT_CUDA_MLX_MALLOC");
    return v != nullptr && std::string(v) == "1";
  }();
  gpu::SetData device_data;
  if (!mlx_malloc) {
    device_data = [&enc](mx::array& a, size_t bytes) { set_device_data(a, bytes, enc); };
  }
  if (!gpu::prepare_outputs(op, plan, inputs, outputs, s, device_data)) {
    return; // e.g. M == 0: outputs are empty
  }
  const DeviceInfo& dev = device_info(device, op);

  std::vector<mx::array> temps;
  temps.reserve(plan.temporaries.size());
  for (const auto& t : plan.temporaries) {
    temps.push_back(gpu::allocate_temporary(op, t, device_data)); // zero_init ones: cleared by a kernel node below
  }

  auto array_of = [&](gpu::ArgKind kind, int index) -> const mx::array* {
    const auto& list = kind == gpu::ArgKind::Input ? inputs : kind == gpu::ArgKind::Output ? outputs : temps;
    return index >= 0 && size_t(index) < list.size() ? &list[index] : nullptr;
  };
  auto pointer_of = [&](gpu::ArgKind kind, int index) -> void* {
    const mx::array* a = array_of(kind, index);
    return a ? device_pointer(*a, dev) : nullptr;
  };

  auto add = [&](const gpu::KernelLaunch& k) {
    if (k.grid.x == 0 || k.grid.y == 0 || k.grid.z == 0) {
      return; // nothing to run
    }
    Kernel& kernel = kernel_cache().get(device, k.name, op);
    bnc::PackedLaunch p;
    try {
      p = bnc::pack_launch(k, *kernel.info, pointer_of, dev.max_shared, "this GPU's blocks");
    } catch (const std::runtime_error& e) {
      throw std::logic_error(std::string("bitnet_ext: ") + op + ": " + e.what());
    }
    kernel_cache().allow_shared(kernel, p.shared_bytes, op);
    for (const auto& b : k.buffers) {
      const mx::array& a = *array_of(b.kind, b.index); // pack_launch checked it exists
      if (a.nbytes() == 0) {
        continue;
      }
      // Temporaries count as outputs whether this kernel writes or reads
      // them: the graph then orders every later use after this one.
      if (b.kind == gpu::ArgKind::Input) {
        enc.set_input_array(a);
      } else {
        enc.set_output_array(a);
      }
    }
    void* params[] = {&p.args};
    enc.add_kernel_node_raw(
        kernel.function,
        dim3(k.grid.x, k.grid.y, k.grid.z),
        dim3(k.group.x, k.group.y, k.group.z),
        dim3(1, 1, 1), // no thread block cluster
        static_cast<uint32_t>(p.shared_bytes),
        params);
  };

  for (size_t i = 0; i < plan.temporaries.size(); ++i) {
    if (plan.temporaries[i].zero_init) {
      add(zero_fill_launch(static_cast<int>(i), temps[i].nbytes()));
    }
  }
  for (const auto& k : plan.kernels) {
    add(k);
  }
  for (const auto& t : temps) {
    enc.add_temporary(t);
  }
}

} // namespace bitnet_ext::cuda

#endif // BITNET_EXT_CUDA
