// CUDA eval_gpu of every bitnet_ext primitive (builds against MLX's CUDA
// backend; cmake/cuda.cmake defines BITNET_EXT_CUDA). Each one makes its
// inputs row-contiguous, computes the launch-plan arguments from its arrays,
// asks the CUDA plan function (csrc/gpu/launch_plan_cuda.h: the shared plans,
// with hand-written CUDA kernels swapped in where measured faster) for the
// plan, and hands it to run_plan (run_plan.h), which adds it to MLX's CUDA
// graph. No launch decision is made here.
#ifdef BITNET_EXT_CUDA

#include <vector>

#include "gpu/cuda/run_plan.h"
#include "gpu/launch_plan_cuda.h"
#include "gpu/plan_arrays.h"
#include "primitives/bitlinear.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
#include "primitives/ternary_matmul.h"

namespace bitnet_ext {

namespace {

namespace plans = gpu::cuda_plans;
using cuda::ensure_row_contiguous;
using cuda::run_plan;
using gpu::per_row;
using gpu::plan_dtype;
using gpu::rows;

std::vector<mx::array> row_contiguous(const std::vector<mx::array>& inputs, const mx::Stream& s) {
  std::vector<mx::array> in;
  in.reserve(inputs.size());
  for (const auto& a : inputs) {
    in.push_back(ensure_row_contiguous(a, s));
  }
  return in;
}

} // namespace

void TernaryMatmul::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // x, wq, scale
  gpu::TernaryMatmulArgs a{};
  a.M = rows(in[0]);
  a.N = in[1].shape(0);
  a.K = int64_t(in[1].shape(1)) * 16;
  a.dtype = plan_dtype(out.dtype(), name());
  a.transpose = transpose_;
  a.per_row_scale = per_row(in[2]);
  a.wq_byte_offset = in[1].offset();
  std::vector<mx::array> outputs{out};
  run_plan(name(), plans::plan_ternary_matmul(a), in, outputs, s);
}

void BitLinear::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // x, wq, scale[, bias]
  gpu::BitLinearArgs a{};
  a.M = rows(in[0]);
  a.N = in[1].shape(0);
  a.K = int64_t(in[1].shape(1)) * 16;
  a.dtype = plan_dtype(out.dtype(), name());
  a.per_row_scale = per_row(in[2]);
  a.has_bias = in.size() > 3;
  a.eps = eps_;
  a.wq_byte_offset = in[1].offset();
  std::vector<mx::array> outputs{out};
  run_plan(name(), plans::plan_bitlinear(a), in, outputs, s);
}

void AbsmaxQuantize::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // x
  const int64_t K = in[0].ndim() ? in[0].shape(-1) : 0;
  run_plan(name(), plans::plan_absmax_quantize(rows(in[0]), K, plan_dtype(in[0].dtype(), name()), eps_), in,
           outputs, s);
}

void AbsmeanQuantize::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // w (N, K)
  const auto& w = in[0];
  run_plan(name(),
           plans::plan_absmean_quantize(w.shape(0), w.shape(1), plan_dtype(w.dtype(), name()), per_channel_, eps_),
           in, outputs, s);
}

void TernaryPack::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // codes, int8 (N, K), see ops.cpp
  // The plan's "invalid" flag is not read back: values were validated by the
  // Python pack(), as on the CPU path (a GPU eval cannot raise afterwards).
  std::vector<mx::array> outputs{out};
  run_plan(name(), plans::plan_pack(in[0].shape(0), in[0].shape(1)), in, outputs, s);
}

void TernaryUnpack::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // wq
  std::vector<mx::array> outputs{out};
  run_plan(name(), plans::plan_unpack(in[0].shape(0), int64_t(in[0].shape(1)) * 16), in, outputs, s);
}

void TernaryDequantize::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  auto in = row_contiguous(inputs, s); // wq, scale
  auto plan = plans::plan_dequantize(
      in[0].shape(0), int64_t(in[0].shape(1)) * 16, plan_dtype(out.dtype(), name()), per_row(in[1]));
  std::vector<mx::array> outputs{out};
  run_plan(name(), plan, in, outputs, s);
}

} // namespace bitnet_ext

#endif // BITNET_EXT_CUDA
