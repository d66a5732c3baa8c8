// bitnet_ext's _metal_cuda: test-only Python access to the CUDA target of the
// shader harness (kernels/*.metal compiled by nvcc through msl_cuda.h). The
// same calls as the fiber harness's _metal_harness (../module.cpp), so that
// tests/test_metal_on_cuda.py runs tests/test_metal_harness.py's cases on it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include "executor.h"
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

} // namespace

NB_MODULE(_metal_cuda, m) {
  m.doc() = "The bitnet_ext Metal shaders compiled for NVIDIA GPUs through a CUDA shim (tests and timing).";

  m.def("device_name", &bnc::device_name, "Name of the current CUDA device.");
  bnh::def_kernel_queries(m, &bnc::kernels, &bnc::executed_kernels, &bnc::reset_executed_kernels);

  m.def(
      "run_plan",
      [](const std::string& kind, const nb::dict& params, const std::vector<Array>& inputs,
         const std::vector<Array>& outputs, const std::string& order, uint64_t seed, int threads, bool garbage) {
        (void)order, (void)seed, (void)threads; // the GPU schedules its threads itself
        gpu::LaunchPlan plan = bnh::make_plan(kind, params);
        auto in = host_buffers(inputs);
        auto out = host_buffers(outputs);
        bnc::RunOptions o;
        o.garbage = garbage;
        nb::gil_scoped_release release;
        bnc::execute_plan(plan, in, out, o);
      },
      "kind"_a, "params"_a, "inputs"_a, "outputs"_a, "order"_a = "forward", "seed"_a = 0, "threads"_a = 0,
      "garbage"_a = true,
      "Execute the launch plan of a primitive on the GPU. inputs/outputs: C-contiguous NumPy arrays in the\n"
      "primitive's order; outputs are overwritten. order/seed/threads: accepted for the fiber harness's\n"
      "signature, ignored. garbage=False leaves outputs uninitialized (for compute-sanitizer initcheck).");

  m.def(
      "time_plan",
      [](const std::string& kind, const nb::dict& params, const std::vector<Array>& inputs,
         const std::vector<Array>& outputs, int warmup, int iters) {
        gpu::LaunchPlan plan = bnh::make_plan(kind, params);
        auto in = host_buffers(inputs);
        auto out = host_buffers(outputs);
        bnc::RunOptions o;
        o.warmup = warmup;
        o.iters = iters;
        nb::gil_scoped_release release;
        return bnc::execute_plan(plan, in, out, o);
      },
      "kind"_a, "params"_a, "inputs"_a, "outputs"_a, "warmup"_a = 10, "iters"_a = 100,
      "Run the plan once (outputs filled), then time each of its kernels: [(kernel name, mean us per launch)].");
}
