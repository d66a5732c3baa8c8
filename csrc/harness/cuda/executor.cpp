#include "executor.h"

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "kernel_record.h"
#include "launch_args.h"
#include "registry.h"

namespace bnc {

namespace {

void check(cudaError_t e, const std::string& what) {
  if (e != cudaSuccess) {
    throw std::runtime_error("bnc: " + what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
  }
}

// A device allocation of exactly `bytes` bytes (compute-sanitizer memcheck
// reports any access past it).
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    check(cudaMalloc(&ptr_, bytes ? bytes : 1), "cudaMalloc of " + std::to_string(bytes) + " bytes");
  }
  ~DeviceBuffer() {
    cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const {
    return ptr_;
  }
  size_t bytes() const {
    return bytes_;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

bnh::ExecutedRecord g_executed;

} // namespace

std::vector<std::string> executed_kernels() {
  return g_executed.list();
}

void reset_executed_kernels() {
  g_executed.reset();
}

std::string device_name() {
  int dev = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  cudaDeviceProp p;
  check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
  return p.name;
}

KernelTimes execute_plan(
    const bitnet_ext::gpu::LaunchPlan& plan,
    const std::vector<HostBuffer>& inputs,
    const std::vector<HostBuffer>& outputs,
    const RunOptions& options) {
  using namespace bitnet_ext::gpu;
  std::vector<std::unique_ptr<DeviceBuffer>> in, out, tmp;
  for (const auto& b : inputs) {
    in.push_back(std::make_unique<DeviceBuffer>(b.bytes));
    check(cudaMemcpy(in.back()->get(), b.data, b.bytes, cudaMemcpyHostToDevice), "copy of an input");
  }
  for (const auto& b : outputs) {
    out.push_back(std::make_unique<DeviceBuffer>(b.bytes));
    if (options.garbage) {
      check(cudaMemset(out.back()->get(), 0xCD, b.bytes), "cudaMemset");
    }
  }
  for (const auto& t : plan.temporaries) {
    tmp.push_back(std::make_unique<DeviceBuffer>(t.bytes));
    if (t.zero_init || options.garbage) {
      check(cudaMemset(tmp.back()->get(), t.zero_init ? 0 : 0xCD, t.bytes), "cudaMemset");
    }
  }

  struct Prepared {
    const KernelInfo* info;
    dim3 grid, group;
    KernelArgs args;
    size_t shared;
    std::vector<std::pair<int, int>> input_slots; // (slot, input index), for input_copies
  };
  std::vector<Prepared> launches;
  std::vector<std::unique_ptr<DeviceBuffer>> scratch; // the mem_flags check's
  for (const auto& k : plan.kernels) {
    const KernelInfo* info = find_kernel(k.name);
    if (!info) {
      throw std::runtime_error("bnc: no kernel named '" + k.name + "' in kernels/ (not instantiated?)");
    }
    auto pointer_of = [&](ArgKind kind, int index) -> void* {
      const auto& list = kind == ArgKind::Input ? in : kind == ArgKind::Output ? out : tmp;
      return index >= 0 && size_t(index) < list.size() ? list[index]->get() : nullptr;
    };
    // The shaders keep to Apple's limit; the hand-written CUDA kernels ("cuda_" names) may take
    // what this GPU allows a block (opted in per kernel as the package's run_plan does).
    const bool handwritten = k.name.rfind("cuda_", 0) == 0;
    size_t limit = kAppleThreadgroupMemory;
    if (handwritten) {
      int dev = 0, bytes = 0;
      check(cudaGetDevice(&dev), "cudaGetDevice");
      check(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
      limit = size_t(bytes);
    }
    PackedLaunch packed = pack_launch(k, *info, pointer_of, limit, handwritten ? "this GPU's blocks" : "Apple GPUs");
    if (handwritten && packed.shared_bytes > 0) { // with static shared memory, 48 KiB may be too much already
      check(cudaFuncSetAttribute(info->entry, cudaFuncAttributeMaxDynamicSharedMemorySize, int(packed.shared_bytes)),
            "raising the shared memory limit of " + k.name);
    }
    Prepared p{info, dim3(k.grid.x, k.grid.y, k.grid.z), dim3(k.group.x, k.group.y, k.group.z), packed.args,
               packed.shared_bytes, {}};
    for (const auto& b : k.buffers) {
      if (b.kind == ArgKind::Input) {
        p.input_slots.push_back({b.slot, b.index});
      }
    }
    // Scratch for the debug build's mem_flags check (unused otherwise; cheap).
    if (p.shared > 0 && !handwritten) {
      const uint64_t blocks = uint64_t(k.grid.x) * k.grid.y * k.grid.z;
      scratch.push_back(std::make_unique<DeviceBuffer>(blocks * p.shared));
      p.args.threadgroup_snapshot = static_cast<unsigned char*>(scratch.back()->get());
      p.args.threadgroup_bytes = uint32_t(p.shared);
    }
    launches.push_back(p);
  }

  auto launch = [](Prepared& p, cudaStream_t stream = nullptr) {
    void* argv[] = {&p.args};
    check(cudaLaunchKernel(p.info->entry, p.grid, p.group, argv, p.shared, stream), "launch of " + p.info->name);
  };
  for (auto& p : launches) {
    if (p.grid.x * uint64_t(p.grid.y) * p.grid.z == 0) {
      continue;
    }
    g_executed.add(p.info->name);
    launch(p);
    const cudaError_t e = cudaDeviceSynchronize();
    std::fflush(stdout); // the kernel's printf (msl_cuda.h's checks print before they trap)
    check(e, "kernel " + p.info->name + " (" + p.info->file + ") failed (if it trapped, msl_cuda's message is on stdout)");
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    check(cudaMemcpy(outputs[i].data, out[i]->get(), outputs[i].bytes, cudaMemcpyDeviceToHost), "copy of an output");
  }

  KernelTimes times;
  if (options.iters > 0) {
    cudaEvent_t start, stop;
    check(cudaEventCreate(&start), "cudaEventCreate");
    check(cudaEventCreate(&stop), "cudaEventCreate");
    // Copy c of every input (c = 0: the checked run's), and each launch bound to each copy.
    const int copies = std::max(1, options.input_copies);
    std::vector<std::vector<std::unique_ptr<DeviceBuffer>>> in_copies(copies - 1);
    for (auto& list : in_copies) {
      for (const auto& b : in) {
        list.push_back(std::make_unique<DeviceBuffer>(b->bytes()));
        check(cudaMemcpy(list.back()->get(), b->get(), b->bytes(), cudaMemcpyDeviceToDevice), "copy of an input");
      }
    }
    for (auto& p : launches) {
      std::vector<Prepared> variants(copies, p);
      for (int c = 1; c < copies; ++c) {
        for (auto [slot, index] : p.input_slots) {
          variants[c].args.buffers[slot] = in_copies[c - 1][index]->get();
        }
      }
      if (options.graph) {
        // The iters launches captured once into a CUDA graph and replayed:
        // GPU time without the host's per-launch cost (MLX's CUDA backend
        // also launches through graphs).
        cudaStream_t stream;
        check(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
        cudaGraph_t graph;
        check(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal), "cudaStreamBeginCapture");
        for (int i = 0; i < options.iters; ++i) {
          launch(variants[i % copies], stream);
        }
        check(cudaStreamEndCapture(stream, &graph), "cudaStreamEndCapture");
        cudaGraphExec_t exec;
        check(cudaGraphInstantiate(&exec, graph, 0), "cudaGraphInstantiate");
        for (int i = 0; i < std::max(1, options.warmup / std::max(1, options.iters)); ++i) {
          check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
        }
        check(cudaEventRecord(start, stream), "cudaEventRecord");
        check(cudaGraphLaunch(exec, stream), "cudaGraphLaunch");
        check(cudaEventRecord(stop, stream), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "kernel " + p.info->name + " failed while timing");
        cudaGraphExecDestroy(exec);
        cudaGraphDestroy(graph);
        cudaStreamDestroy(stream);
      } else {
        for (int i = 0; i < options.warmup; ++i) {
          launch(variants[i % copies]);
        }
        check(cudaEventRecord(start), "cudaEventRecord");
        for (int i = 0; i < options.iters; ++i) {
          launch(variants[i % copies]);
        }
        check(cudaEventRecord(stop), "cudaEventRecord");
        check(cudaEventSynchronize(stop), "kernel " + p.info->name + " failed while timing");
      }
      float ms = 0;
      check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
      times.push_back({p.info->name, 1000.0 * ms / options.iters});
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  return times;
}

} // namespace bnc
