#include "gpu/launch_plan_cuda.h"

namespace bitnet_ext::gpu::cuda_plans {

// No hand-written CUDA kernel yet: every op runs the shared plan.
LaunchPlan plan_ternary_matmul(const TernaryMatmulArgs& a) {
  return gpu::plan_ternary_matmul(a);
}
LaunchPlan plan_bitlinear(const BitLinearArgs& a) {
  return gpu::plan_bitlinear(a);
}
LaunchPlan plan_absmax_quantize(int64_t M, int64_t K, Dtype dtype, float eps) {
  return gpu::plan_absmax_quantize(M, K, dtype, eps);
}
LaunchPlan plan_absmean_quantize(int64_t N, int64_t K, Dtype dtype, bool per_row, float eps) {
  return gpu::plan_absmean_quantize(N, K, dtype, per_row, eps);
}
LaunchPlan plan_pack(int64_t N, int64_t K) {
  return gpu::plan_pack(N, K);
}
LaunchPlan plan_unpack(int64_t N, int64_t K) {
  return gpu::plan_unpack(N, K);
}
LaunchPlan plan_dequantize(int64_t N, int64_t K, Dtype dtype, bool per_row_scale) {
  return gpu::plan_dequantize(N, K, dtype, per_row_scale);
}

} // namespace bitnet_ext::gpu::cuda_plans
