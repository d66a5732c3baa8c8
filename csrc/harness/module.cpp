// bitnet_ext._metal_harness: test-only Python access to the CPU shader harness.
//
// Arrays are NumPy arrays (C-contiguous, any dtype: bfloat16 travels as raw
// uint16); the module knows nothing about MLX. See docs/metal_harness.md.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <memory>

#include "executor.h"
#include "module_common.h"

namespace nb = nanobind;
using namespace nb::literals;
namespace gpu = bitnet_ext::gpu;
using bnh::make_plan;

namespace {

using Array = nb::ndarray<nb::device::cpu, nb::c_contig>;

bnh::LaunchOptions options(const std::string& order, uint64_t seed, int threads) {
  bnh::LaunchOptions o;
  o.order = bnh::parse_order(order);
  o.seed = seed;
  o.threads = threads;
  return o;
}

std::vector<bnh::HostBuffer> host_buffers(const std::vector<Array>& arrays) {
  std::vector<bnh::HostBuffer> v;
  for (const auto& a : arrays) {
    v.push_back({const_cast<void*>(a.data()), a.nbytes()});
  }
  return v;
}

} // namespace

NB_MODULE(_metal_harness, m) {
  m.doc() = "CPU execution harness for the bitnet_ext Metal shaders (tests and kernel development).";

  bnh::def_kernel_queries(m, &bnh::kernels, &bnh::executed_kernels, &bnh::reset_executed_kernels);

  m.def(
      "run_plan",
      [](const std::string& kind, const nb::dict& params, const std::vector<Array>& inputs,
         const std::vector<Array>& outputs, const std::string& order, uint64_t seed, int threads) {
        gpu::LaunchPlan plan = make_plan(kind, params);
        auto in = host_buffers(inputs);
        auto out = host_buffers(outputs);
        nb::gil_scoped_release release;
        bnh::execute_plan(plan, in, out, options(order, seed, threads));
      },
      "kind"_a, "params"_a, "inputs"_a, "outputs"_a, "order"_a = "forward", "seed"_a = 0, "threads"_a = 0,
      "Execute the launch plan of a primitive (csrc/gpu/launch_plan.h) on the harness. inputs/outputs are\n"
      "C-contiguous NumPy arrays in the primitive's order; outputs are overwritten.");

  m.def(
      "launch",
      [](const std::string& name, std::vector<uint32_t> grid, std::vector<uint32_t> group, nb::list buffers,
         std::vector<size_t> threadgroup_memory, const std::string& order, uint64_t seed, int threads) {
        grid.resize(3, 1);
        group.resize(3, 1);
        std::vector<void*> slots;
        std::vector<std::unique_ptr<uint32_t>> scalars;
        for (nb::handle h : buffers) {
          if (h.is_none()) {
            slots.push_back(nullptr);
          } else if (nb::isinstance<nb::bool_>(h) || nb::isinstance<nb::int_>(h)) {
            scalars.push_back(std::make_unique<uint32_t>(uint32_t(nb::cast<int64_t>(h))));
            slots.push_back(scalars.back().get());
          } else if (nb::isinstance<nb::float_>(h)) {
            float f = nb::cast<float>(h);
            auto u = std::make_unique<uint32_t>();
            std::memcpy(u.get(), &f, 4);
            scalars.push_back(std::move(u));
            slots.push_back(scalars.back().get());
          } else {
            slots.push_back(nb::cast<Array>(h).data());
          }
        }
        nb::gil_scoped_release release;
        bnh::launch(name, bnh::U3{grid[0], grid[1], grid[2]}, bnh::U3{group[0], group[1], group[2]}, slots,
                    threadgroup_memory, options(order, seed, threads));
      },
      "name"_a, "grid"_a, "group"_a, "buffers"_a, "threadgroup_memory"_a = std::vector<size_t>{},
      "order"_a = "forward", "seed"_a = 0, "threads"_a = 0,
      "Launch one kernel by host name directly: grid = threadgroups, group = threads per threadgroup;\n"
      "buffers[i] binds [[buffer(i)]]: a NumPy array (in place, no guard pages), an int (int32/uint32\n"
      "constant), a float (float32 constant) or None; threadgroup_memory[i] = bytes of [[threadgroup(i)]].");
}
