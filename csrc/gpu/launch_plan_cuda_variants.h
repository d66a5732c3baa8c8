// Every hand-written CUDA kernel variant as a plan of its own, whatever
// launch_plan_cuda.cpp would choose for the shape: what the tests use to run
// each variant against the reference, and the timing script to measure the
// choices that launch_plan_cuda.cpp makes. Each throws std::invalid_argument
// for a shape or dtype the variant does not handle.
#pragma once

#include "gpu/launch_plan.h"

namespace bitnet_ext::gpu::cuda_plans::variants {

// cuda_ternary_gemv_<T>_r<rows>[_w<warps>][_a<stages>]: transpose = true, T float16 or bfloat16,
// rows (16-row tiles of W per block) 1, 2 or 4, warps (splitting K) 4, 8 or 16;
// any M (8 rows of x per grid.y). async_stages > 0: that many steps of W in flight in shared memory
// (gemv_w_loads.cuh; launch_plan_cuda.cpp's ring_suffix lists the combinations built).
LaunchPlan ternary_gemv(const TernaryMatmulArgs& a, int rows, int warps = 4, int async_stages = 0);

// cuda_ternary_gemm_<T>_bm<bm>_w<warps>: transpose = true, T float16 or bfloat16,
// bm 64 or 128, warps 8 (warp tiles bm/2 x 32) or 4 (bm/2 x 64).
LaunchPlan ternary_gemm(const TernaryMatmulArgs& a, int bm, int warps = 8);

// fused (M = 1 only): cuda_bitlinear_fused_<T>_r<rows>[_w<warps>][...] alone;
// else cuda_absmax_quantize_quad_<T> then cuda_bitlinear_gemv_<T>_r<rows>[_w<warps>][...];
// async_stages as ternary_gemv's.
LaunchPlan bitlinear_gemv(const BitLinearArgs& a, int rows, bool fused, int warps = 4, int async_stages = 0);

// The shared absmax_quantize_<T>, then cuda_bitlinear_gemm_<T>_bm<bm>_w<warps>.
LaunchPlan bitlinear_gemm(const BitLinearArgs& a, int bm, int warps = 8);

// W decoded in registers (kernels/mma_gemm.cu), tile = index into launch_plan_cuda.cpp's kMmaTiles:
// cuda_ternary_mma_<T>_bm<BM>_bn<BN>_w<warps>_s<stages> (transpose = true, float16 / bfloat16), and
// cuda_absmax_quantize_quad_<T> then cuda_bitlinear_mma_<T>_<same tile>.
// split: the tiles past the last whole wave split K (launch_plan_cuda.cpp's mma_launch).
LaunchPlan ternary_mma(const TernaryMatmulArgs& a, int tile, bool split = true);
LaunchPlan bitlinear_mma(const BitLinearArgs& a, int tile, bool split = true);

// Hopper's warpgroup MMA (kernels/wgmma_gemm.cuh; sm_90a builds on a compute capability 9.0 GPU only),
// tile = index into launch_plan_cuda.cpp's kWgmmaTiles: cuda_ternary_wgmma_<T>_bx<BX>_s<S>, and
// cuda_absmax_quantize_quad_<T> then cuda_bitlinear_wgmma_<T>_<same tile>; split as the mma variants.
LaunchPlan ternary_wgmma(const TernaryMatmulArgs& a, int tile, bool split = true);
LaunchPlan bitlinear_wgmma(const BitLinearArgs& a, int tile, bool split = true);

// Whether the plans may choose the wgmma GEMMs in this process (sm_90a code built, a 9.0 GPU).
bool wgmma_available();

} // namespace bitnet_ext::gpu::cuda_plans::variants
