// Launch plans for MLX's CUDA backend.
//
// The same plan structs as launch_plan.h, executed by csrc/gpu/cuda/ inside
// MLX's CUDA graph and by the CUDA target of the shader harness
// (csrc/harness/cuda). Each function starts from the shared plan of
// launch_plan.h (kernels/*.metal compiled through the MSL-on-CUDA shim) and
// swaps in a hand-written CUDA kernel (csrc/gpu/cuda/kernels/) where one is
// measured faster on that shape; every such choice is made here, nowhere else.
#pragma once

#include "gpu/launch_plan.h"

namespace bitnet_ext::gpu::cuda_plans {

LaunchPlan plan_ternary_matmul(const TernaryMatmulArgs& a);
LaunchPlan plan_bitlinear(const BitLinearArgs& a);
LaunchPlan plan_absmax_quantize(int64_t M, int64_t K, Dtype dtype, float eps);
LaunchPlan plan_absmean_quantize(int64_t N, int64_t K, Dtype dtype, bool per_row, float eps);
LaunchPlan plan_pack(int64_t N, int64_t K);
LaunchPlan plan_unpack(int64_t N, int64_t K);
LaunchPlan plan_dequantize(int64_t N, int64_t K, Dtype dtype, bool per_row_scale);

} // namespace bitnet_ext::gpu::cuda_plans
