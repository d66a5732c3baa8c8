// Zero-fills a plan's zero_init temporaries inside MLX's CUDA graph (a
// memset from the host would neither be ordered with the graph nor be cheap
// on managed memory). Launched by run_plan.cpp like any plan kernel, through
// the registry, under the name kZeroFillKernel.
#include <cstdint>

#include "gpu/cuda/zero_fill.h"
#include "kernel_args.cuh"
#include "param_kind.h"

namespace {

// buffer(0): the temporary (16-byte aligned); constant(1): its size in 16-byte units.
__global__ void bitnet_ext_zero_fill(bnc::KernelArgs a) {
  uint4* p = bnc::buffer<uint4>(a, 0);
  const uint32_t units = static_cast<uint32_t>(bnc::constant_i32(a, 1));
  const uint32_t stride = gridDim.x * blockDim.x;
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < units; i += stride) {
    p[i] = make_uint4(0, 0, 0, 0);
  }
}

const bnc::Registration registration(
    bitnet_ext::cuda::kZeroFillKernel,
    __FILE__,
    reinterpret_cast<const void*>(&bitnet_ext_zero_fill),
    {int(bnh::ParamKind::Buffer) * 256 + 0, int(bnh::ParamKind::Buffer) * 256 + 1});

} // namespace
