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

namespace nb = nanobind;
using namespace nb::literals;
namespace gpu = bitnet_ext::gpu;

namespace {

using Array = nb::ndarray<nb::device::cpu, nb::c_contig>;

bnh::LaunchOptions options(const std::string& order, uint64_t seed, int threads) {
  bnh::LaunchOptions o;
  o.order = bnh::parse_order(order);
  o.seed = seed;
  o.threads = threads;
  return o;
}

gpu::Dtype parse_dtype(const std::string& s) {
  if (s == "float32") {
    return gpu::Dtype::float32;
  }
  if (s == "float16") {
    return gpu::Dtype::float16;
  }
  if (s == "bfloat16") {
    return gpu::Dtype::bfloat16;
  }
  throw nb::value_error(("dtype must be float32, float16 or bfloat16, got " + s).c_str());
}

template <class T>
T get(const nb::dict& d, const char* key, T fallback) {
  return d.contains(key) ? nb::cast<T>(d[key]) : fallback;
}
template <class T>
T need(const nb::dict& d, const char* key) {
  if (!d.contains(key)) {
    throw nb::key_error((std::string("missing plan parameter '") + key + "'").c_str());
  }
  return nb::cast<T>(d[key]);
}

gpu::LaunchPlan make_plan(const std::string& kind, const nb::dict& p) {
  if (kind == "ternary_matmul") {
    gpu::TernaryMatmulArgs a{need<int64_t>(p, "M"), need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                             parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "transpose", true),
                             get<bool>(p, "per_row_scale", false), get<int64_t>(p, "wq_byte_offset", 0)};
    return gpu::plan_ternary_matmul(a);
  }
  if (kind == "bitlinear") {
    gpu::BitLinearArgs a{need<int64_t>(p, "M"), need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                         parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row_scale", false),
                         get<bool>(p, "has_bias", false), get<float>(p, "eps", 1e-5f),
                         get<int64_t>(p, "wq_byte_offset", 0)};
    return gpu::plan_bitlinear(a);
  }
  if (kind == "absmax_quantize") {
    return gpu::plan_absmax_quantize(need<int64_t>(p, "M"), need<int64_t>(p, "K"),
                                     parse_dtype(need<std::string>(p, "dtype")), get<float>(p, "eps", 1e-5f));
  }
  if (kind == "absmean_quantize") {
    return gpu::plan_absmean_quantize(need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                                      parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row", false),
                                      get<float>(p, "eps", 1e-5f));
  }
  if (kind == "pack") {
    return gpu::plan_pack(need<int64_t>(p, "N"), need<int64_t>(p, "K"));
  }
  if (kind == "unpack") {
    return gpu::plan_unpack(need<int64_t>(p, "N"), need<int64_t>(p, "K"));
  }
  if (kind == "dequantize") {
    return gpu::plan_dequantize(need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                                parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row_scale", false));
  }
  throw nb::value_error(("unknown plan kind " + kind).c_str());
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

  m.def(
      "kernel_names",
      [] {
        std::vector<std::string> names;
        for (const auto& k : bnh::kernels()) {
          names.push_back(k.name);
        }
        return names;
      },
      "Host names of every [[kernel]] instantiated in kernels/*.metal.");
  m.def(
      "kernel_sources",
      [] {
        std::vector<std::pair<std::string, std::string>> v;
        for (const auto& k : bnh::kernels()) {
          v.push_back({k.name, k.file});
        }
        return v;
      },
      "(host name, .metal file) of every kernel.");
  m.def("plan_kernel_names", &gpu::all_kernel_names, "Every kernel name the launch plans can produce.");
  m.def("executed_kernels", &bnh::executed_kernels, "Kernels launched so far in this process.");
  m.def("reset_executed_kernels", &bnh::reset_executed_kernels);

  m.def(
      "describe_plan",
      [](const std::string& kind, const nb::dict& params) { return gpu::describe(make_plan(kind, params)); },
      "kind"_a, "params"_a, "The launch plan of a primitive, as text.");

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
