// bitnet_ext's _metal_cuda: test-only Python access to the CUDA target of the
// shader harness (kernels/*.metal compiled by nvcc through msl_cuda.h) and to
// the hand-written CUDA kernels (csrc/gpu/cuda/kernels/). The same calls as the
// fiber harness's _metal_harness (../module.cpp), so that
// tests/test_metal_on_cuda.py runs tests/test_metal_harness.py's cases on it;
// plans="cuda" runs the CUDA backend's plans (gpu/launch_plan_cuda.h) instead of
// the shared ones, and a "variant" parameter one hand-written kernel variant
// (gpu/launch_plan_cuda_variants.h), as tests/test_cuda_kernels.py does.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "executor.h"
#include "gpu/launch_plan_cuda.h"
#include "gpu/launch_plan_cuda_variants.h"
#include "module_common.h"
#include "registry.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace gpu = bitnet_ext::gpu;

namespace {

using Array = nb::ndarray<nb::device::cpu, nb::c_contig>;

std::vector<bnc::HostBuffer> host_buffers(const std::vector<Array>& arrays) {
  std::vector<bnc::HostBuffer> v;
  for (const auto& a : arrays) {
    v.push_back({const_cast<void*>(a.data()), a.nbytes()});
  }
  return v;
}

const bnh::PlanSet kCudaPlans{
    &gpu::cuda_plans::plan_ternary_matmul, &gpu::cuda_plans::plan_bitlinear, &gpu::cuda_plans::plan_absmax_quantize,
    &gpu::cuda_plans::plan_absmean_quantize, &gpu::cuda_plans::plan_pack, &gpu::cuda_plans::plan_unpack,
    &gpu::cuda_plans::plan_dequantize};

// "<family>_<letters><number>", e.g. gemv_r2, gemvw16_r1, gemvw8a4_r1, fuseda8_r1, gemm_bm128, mma_t3.
std::pair<std::string, int> parse_variant(const std::string& v) {
  const auto us = v.find('_');
  const auto tail = v.find_last_not_of("0123456789");
  if (us == std::string::npos || tail == std::string::npos || tail + 1 == v.size() || tail <= us) {
    throw nb::value_error(("variant must look like gemv_r2 or gemm_bm64, got " + v).c_str());
  }
  return {v.substr(0, us), std::stoi(v.substr(tail + 1))};
}

// plans: "shared" (launch_plan.h), "cuda" (launch_plan_cuda.h; with a
// "variant" parameter, that variant of launch_plan_cuda_variants.h).
gpu::LaunchPlan make_plan(const std::string& plans, const std::string& kind, const nb::dict& p) {
  if (plans == "shared") {
    return bnh::make_plan(kind, p);
  }
  if (plans != "cuda") {
    throw nb::value_error(("plans must be 'shared' or 'cuda', got " + plans).c_str());
  }
  if (!p.contains("variant")) {
    return bnh::make_plan(kind, p, kCudaPlans);
  }
  namespace v = gpu::cuda_plans::variants;
  const auto [family, n] = parse_variant(nb::cast<std::string>(p["variant"]));
  // The decode GEMVs: gemv or fused, then w8 / w16 (warps; else 4), then a<stages> (W in a
  // shared-memory ring): gemvw8a4_r1, fuseda8_r1.
  int gemv_warps = 0, stages = 0;
  bool fused = false;
  if (family.rfind("gemv", 0) == 0 || family.rfind("fused", 0) == 0) {
    fused = family[0] == 'f';
    std::string rest = family.substr(fused ? 5 : 4);
    gemv_warps = 4;
    if (rest.rfind("w16", 0) == 0 || rest.rfind("w8", 0) == 0) {
      gemv_warps = rest[1] == '8' ? 8 : 16;
      rest = rest.substr(gemv_warps == 8 ? 2 : 3);
    }
    if (rest.size() >= 2 && rest[0] == 'a') {
      stages = std::stoi(rest.substr(1));
    } else if (!rest.empty()) {
      throw nb::value_error(("no CUDA variant " + family + " for " + kind).c_str());
    }
  }
  if (kind == "ternary_matmul" && gemv_warps && !fused) {
    return v::ternary_gemv(bnh::ternary_matmul_args(p), n, gemv_warps, stages);
  }
  if (kind == "ternary_matmul" && (family == "gemm" || family == "gemmw4")) {
    return v::ternary_gemm(bnh::ternary_matmul_args(p), n, family == "gemm" ? 8 : 4);
  }
  if (kind == "bitlinear" && gemv_warps) {
    return v::bitlinear_gemv(bnh::bitlinear_args(p), n, fused, gemv_warps, stages);
  }
  if (kind == "bitlinear" && (family == "gemm" || family == "gemmw4")) {
    return v::bitlinear_gemm(bnh::bitlinear_args(p), n, family == "gemm" ? 8 : 4);
  }
  if (family == "mma" || family == "mmas") { // mma: no split of K; mmas: split as the plans do
    const bool split = family == "mmas";
    return kind == "bitlinear" ? v::bitlinear_mma(bnh::bitlinear_args(p), n, split)
                               : v::ternary_mma(bnh::ternary_matmul_args(p), n, split);
  }
  if (family == "wgmma" || family == "wgmmas") { // wgmma: no split of K; wgmmas: split as the plans do
    const bool split = family == "wgmmas";
    return kind == "bitlinear" ? v::bitlinear_wgmma(bnh::bitlinear_args(p), n, split)
                               : v::ternary_wgmma(bnh::ternary_matmul_args(p), n, split);
  }
  throw nb::value_error(("no CUDA variant " + family + " for " + kind).c_str());
}

} // namespace

NB_MODULE(_metal_cuda, m) {
  m.doc() = "The bitnet_ext Metal shaders compiled for NVIDIA GPUs through a CUDA shim (tests and timing).";

  m.def("device_name", &bnc::device_name, "Name of the current CUDA device.");
  m.def("wgmma_available", &gpu::cuda_plans::variants::wgmma_available,
        "Whether the CUDA plans may choose the wgmma GEMMs here (sm_90a code built, a compute capability 9.0 GPU).");
  bnh::def_kernel_queries(m, &bnc::kernels, &bnc::executed_kernels, &bnc::reset_executed_kernels);

  m.def(
      "run_plan",
      [](const std::string& kind, const nb::dict& params, const std::vector<Array>& inputs,
         const std::vector<Array>& outputs, const std::string& order, uint64_t seed, int threads, bool garbage,
         const std::string& plans) {
        (void)order, (void)seed, (void)threads; // the GPU schedules its threads itself
        gpu::LaunchPlan plan = make_plan(plans, kind, params);
        auto in = host_buffers(inputs);
        auto out = host_buffers(outputs);
        bnc::RunOptions o;
        o.garbage = garbage;
        nb::gil_scoped_release release;
        bnc::execute_plan(plan, in, out, o);
      },
      "kind"_a, "params"_a, "inputs"_a, "outputs"_a, "order"_a = "forward", "seed"_a = 0, "threads"_a = 0,
      "garbage"_a = true, "plans"_a = "shared",
      "Execute the launch plan of a primitive on the GPU. inputs/outputs: C-contiguous NumPy arrays in the\n"
      "primitive's order; outputs are overwritten. order/seed/threads: accepted for the fiber harness's\n"
      "signature, ignored. garbage=False leaves outputs uninitialized (for compute-sanitizer initcheck).\n"
      "plans='cuda': the CUDA backend's plans (params may name a 'variant', e.g. 'gemv_r2').");

  m.def(
      "time_plan",
      [](const std::string& kind, const nb::dict& params, const std::vector<Array>& inputs,
         const std::vector<Array>& outputs, int warmup, int iters, const std::string& plans, int input_copies, bool graph) {
        gpu::LaunchPlan plan = make_plan(plans, kind, params);
        auto in = host_buffers(inputs);
        auto out = host_buffers(outputs);
        bnc::RunOptions o;
        o.warmup = warmup;
        o.iters = iters;
        o.input_copies = input_copies;
        o.graph = graph;
        nb::gil_scoped_release release;
        return bnc::execute_plan(plan, in, out, o);
      },
      "kind"_a, "params"_a, "inputs"_a, "outputs"_a, "warmup"_a = 10, "iters"_a = 100, "plans"_a = "shared",
      "input_copies"_a = 1, "graph"_a = false,
      "Run the plan once (outputs filled), then time each of its kernels: [(kernel name, mean us per launch)].\n"
      "input_copies > 1: the timed launches cycle through that many device copies of the inputs (cold L2).\n"
      "graph=True: the timed launches are one CUDA graph (no host launch cost per kernel).");

  m.def(
      "describe_cuda_plan",
      [](const std::string& kind, const nb::dict& params) { return gpu::describe(make_plan("cuda", kind, params)); },
      "kind"_a, "params"_a, "The CUDA backend's launch plan of a primitive (or of a 'variant'), as text.");
}
