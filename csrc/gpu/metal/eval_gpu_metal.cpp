// Metal eval_gpu of every bitnet_ext primitive (builds with MLX's Metal
// backend; cmake/metal.cmake). Each one computes the launch-plan arguments
// from its arrays, asks the shared plan function (csrc/gpu/launch_plan.h, the
// same one the CPU shader harness runs) for the plan, and hands it to
// run_plan (dispatch.h), which translates it to Metal. No launch decision is
// made here.
//
// UNVERIFIED: written on Linux from MLX 0.32.4's sources; it has not been
// compiled or run on a Mac yet. See docs/metal_backend.md.
#if defined(BITNET_EXT_METAL) && !defined(_METAL_)
#error "BITNET_EXT_METAL is set but MLX's _METAL_ is not: cmake/metal.cmake needs an MLX built with Metal"
#endif

#ifdef _METAL_

#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gpu/launch_plan.h"
#include "gpu/metal/dispatch.h"
#include "gpu/plan_arrays.h"
#include "primitives/bitlinear.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
#include "primitives/ternary_matmul.h"

namespace bitnet_ext {

namespace {

using gpu::per_row;
using gpu::plan_dtype;
using gpu::rows;
using metal::ensure_row_contiguous;
using metal::run_plan;

// BITNET_EXT_GEMM_TILE=<BM>x<BN> (e.g. 64x64): the GEMM tile for M > 16
// instead of the plan's own choice, read at every evaluation so that
// bench/bench_metal.py can time each tile in one process. A measurement
// switch: the plan raises for a tile its kernels do not have.
void gemm_tile_override(int& bm, int& bn) {
  const char* v = std::getenv("BITNET_EXT_GEMM_TILE");
  int m = 0, n = 0;
  char end = 0;
  if (v && *v && std::sscanf(v, "%dx%d%c", &m, &n, &end) == 2) {
    bm = m;
    bn = n;
  }
}

} // namespace

void TernaryMatmul::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  mx::array x = ensure_row_contiguous(inputs[0], s);
  mx::array wq = ensure_row_contiguous(inputs[1], s);
  mx::array scale = ensure_row_contiguous(inputs[2], s);
  gpu::TernaryMatmulArgs a{};
  a.M = rows(x);
  a.N = wq.shape(0);
  a.K = int64_t(wq.shape(1)) * 16;
  a.dtype = plan_dtype(out.dtype(), name());
  a.transpose = transpose_;
  a.per_row_scale = per_row(scale);
  a.wq_byte_offset = wq.offset();
  gemm_tile_override(a.gemm_bm, a.gemm_bn);
  std::vector<mx::array> outputs{out};
  run_plan(name(), gpu::plan_ternary_matmul(a), {x, wq, scale}, outputs, s);
}

void BitLinear::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  std::vector<mx::array> in;
  in.reserve(inputs.size());
  for (const auto& a : inputs) {
    in.push_back(ensure_row_contiguous(a, s));
  }
  const auto& x = in[0];
  const auto& wq = in[1];
  gpu::BitLinearArgs a{};
  a.M = rows(x);
  a.N = wq.shape(0);
  a.K = int64_t(wq.shape(1)) * 16;
  a.dtype = plan_dtype(out.dtype(), name());
  a.per_row_scale = per_row(in[2]);
  a.has_bias = in.size() > 3;
  a.eps = eps_;
  a.wq_byte_offset = wq.offset();
  gemm_tile_override(a.gemm_bm, a.gemm_bn);
  std::vector<mx::array> outputs{out};
  run_plan(name(), gpu::plan_bitlinear(a), in, outputs, s);
}

void AbsmaxQuantize::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto& s = stream();
  mx::array x = ensure_row_contiguous(inputs[0], s);
  int64_t K = x.ndim() ? x.shape(-1) : 0;
  auto plan = gpu::plan_absmax_quantize(rows(x), K, plan_dtype(x.dtype(), name()), eps_);
  run_plan(name(), plan, {x}, outputs, s);
}

void AbsmeanQuantize::eval_gpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) {
  const auto& s = stream();
  mx::array w = ensure_row_contiguous(inputs[0], s);
  auto plan = gpu::plan_absmean_quantize(
      w.shape(0), w.shape(1), plan_dtype(w.dtype(), name()), per_channel_, eps_);
  run_plan(name(), plan, {w}, outputs, s);
}

void TernaryPack::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  mx::array codes = ensure_row_contiguous(inputs[0], s); // int8 (N, K), see ops.cpp
  // The plan's "invalid" flag is not read back: values were validated by the
  // Python pack(), as on the CPU path (a GPU eval cannot raise afterwards).
  std::vector<mx::array> outputs{out};
  run_plan(name(), gpu::plan_pack(codes.shape(0), codes.shape(1)), {codes}, outputs, s);
}

void TernaryUnpack::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  mx::array wq = ensure_row_contiguous(inputs[0], s);
  std::vector<mx::array> outputs{out};
  run_plan(name(), gpu::plan_unpack(wq.shape(0), int64_t(wq.shape(1)) * 16), {wq}, outputs, s);
}

void TernaryDequantize::eval_gpu(const std::vector<mx::array>& inputs, mx::array& out) {
  const auto& s = stream();
  mx::array wq = ensure_row_contiguous(inputs[0], s);
  mx::array scale = ensure_row_contiguous(inputs[1], s);
  auto plan = gpu::plan_dequantize(
      wq.shape(0), int64_t(wq.shape(1)) * 16, plan_dtype(out.dtype(), name()), per_row(scale));
  std::vector<mx::array> outputs{out};
  run_plan(name(), plan, {wq, scale}, outputs, s);
}

} // namespace bitnet_ext

#endif // _METAL_
