// The wgmma GEMMs (wgmma_gemm.cuh) on one tile of launch_plan_cuda.cpp's kWgmmaTiles (keep the lists equal).
#include "wgmma_gemm.cuh"

namespace bitnet_cuda::wgmma {
namespace {
BITNET_CUDA_WGMMA_TILE(128, 5, 1)
} // namespace
} // namespace bitnet_cuda::wgmma
