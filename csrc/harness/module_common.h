// Shared by the Python modules of both shader-harness targets (fibers:
// module.cpp, CUDA: cuda/module.cpp): a LaunchPlan from a dict of primitive
// arguments (both run exactly the plans the Metal eval_gpu runs), and the
// module functions that query kernels and plans.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <string>
#include <utility>
#include <vector>

#include "gpu/launch_plan.h"

namespace bnh {

namespace nb = nanobind;
namespace gpu = bitnet_ext::gpu;

inline gpu::Dtype parse_dtype(const std::string& s) {
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
inline T get(const nb::dict& d, const char* key, T fallback) {
  return d.contains(key) ? nb::cast<T>(d[key]) : fallback;
}
template <class T>
inline T need(const nb::dict& d, const char* key) {
  if (!d.contains(key)) {
    throw nb::key_error((std::string("missing plan parameter '") + key + "'").c_str());
  }
  return nb::cast<T>(d[key]);
}

inline gpu::TernaryMatmulArgs ternary_matmul_args(const nb::dict& p) {
  return gpu::TernaryMatmulArgs{need<int64_t>(p, "M"), need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                                parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "transpose", true),
                                get<bool>(p, "per_row_scale", false), get<int64_t>(p, "wq_byte_offset", 0),
                                get<int>(p, "gemm_bm", 0), get<int>(p, "gemm_bn", 0)};
}

inline gpu::BitLinearArgs bitlinear_args(const nb::dict& p) {
  return gpu::BitLinearArgs{need<int64_t>(p, "M"), need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                            parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row_scale", false),
                            get<bool>(p, "has_bias", false), get<float>(p, "eps", 1e-5f),
                            get<int64_t>(p, "wq_byte_offset", 0), get<bool>(p, "fused", true),
                            get<int>(p, "gemm_bm", 0), get<int>(p, "gemm_bn", 0)};
}

// One plan function per primitive: launch_plan.h's (the Metal eval_gpu's), or
// a CUDA target's own set (cuda/module.cpp).
struct PlanSet {
  gpu::LaunchPlan (*ternary_matmul)(const gpu::TernaryMatmulArgs&);
  gpu::LaunchPlan (*bitlinear)(const gpu::BitLinearArgs&);
  gpu::LaunchPlan (*absmax_quantize)(int64_t M, int64_t K, gpu::Dtype, float eps);
  gpu::LaunchPlan (*absmean_quantize)(int64_t N, int64_t K, gpu::Dtype, bool per_row, float eps);
  gpu::LaunchPlan (*pack)(int64_t N, int64_t K);
  gpu::LaunchPlan (*unpack)(int64_t N, int64_t K);
  gpu::LaunchPlan (*dequantize)(int64_t N, int64_t K, gpu::Dtype, bool per_row_scale);
};

inline const PlanSet kSharedPlans{
    static_cast<gpu::LaunchPlan (*)(const gpu::TernaryMatmulArgs&)>(&gpu::plan_ternary_matmul),
    static_cast<gpu::LaunchPlan (*)(const gpu::BitLinearArgs&)>(&gpu::plan_bitlinear),
    &gpu::plan_absmax_quantize,
    &gpu::plan_absmean_quantize,
    &gpu::plan_pack,
    &gpu::plan_unpack,
    &gpu::plan_dequantize};

inline gpu::LaunchPlan make_plan(const std::string& kind, const nb::dict& p, const PlanSet& plans = kSharedPlans) {
  if (kind == "ternary_matmul") {
    return plans.ternary_matmul(ternary_matmul_args(p));
  }
  if (kind == "bitlinear") {
    return plans.bitlinear(bitlinear_args(p));
  }
  if (kind == "absmax_quantize") {
    return plans.absmax_quantize(need<int64_t>(p, "M"), need<int64_t>(p, "K"),
                                  parse_dtype(need<std::string>(p, "dtype")), get<float>(p, "eps", 1e-5f));
  }
  if (kind == "absmean_quantize") {
    return plans.absmean_quantize(need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                                   parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row", false),
                                   get<float>(p, "eps", 1e-5f));
  }
  if (kind == "pack") {
    return plans.pack(need<int64_t>(p, "N"), need<int64_t>(p, "K"));
  }
  if (kind == "unpack") {
    return plans.unpack(need<int64_t>(p, "N"), need<int64_t>(p, "K"));
  }
  if (kind == "dequantize") {
    return plans.dequantize(need<int64_t>(p, "N"), need<int64_t>(p, "K"),
                             parse_dtype(need<std::string>(p, "dtype")), get<bool>(p, "per_row_scale", false));
  }
  throw nb::value_error(("unknown plan kind " + kind).c_str());
}

// kernel_names, kernel_sources, plan_kernel_names, executed_kernels,
// reset_executed_kernels, describe_plan, check_threadgroup_memory. kernels(): the target's registry.
template <class Kernels, class Executed, class Reset>
void def_kernel_queries(nb::module_& m, Kernels kernels, Executed executed, Reset reset) {
  using namespace nb::literals;
  m.def(
      "kernel_names",
      [kernels] {
        std::vector<std::string> names;
        for (const auto& k : kernels()) {
          names.push_back(k.name);
        }
        return names;
      },
      "Host names of every [[kernel]] instantiated in kernels/*.metal.");
  m.def(
      "kernel_sources",
      [kernels] {
        std::vector<std::pair<std::string, std::string>> v;
        for (const auto& k : kernels()) {
          v.push_back({k.name, k.file});
        }
        return v;
      },
      "(host name, .metal file) of every kernel.");
  m.def("plan_kernel_names", &gpu::all_kernel_names, "Every kernel name the launch plans can produce.");
  m.def("executed_kernels", executed, "Kernels launched so far in this process.");
  m.def("reset_executed_kernels", reset);
  m.def(
      "describe_plan",
      [](const std::string& kind, const nb::dict& params) { return gpu::describe(make_plan(kind, params)); },
      "kind"_a, "params"_a, "The launch plan of a primitive, as text.");
  m.def(
      "check_threadgroup_memory",
      [](const std::vector<size_t>& bytes) {
        gpu::KernelLaunch k;
        k.name = "probe";
        for (size_t i = 0; i < bytes.size(); ++i) {
          k.threadgroup_memory.push_back({static_cast<int>(i), bytes[i]});
        }
        gpu::check_threadgroup_memory(k);
      },
      "bytes"_a,
      "The launch plans' threadgroup memory check on a kernel with these [[threadgroup(i)]] sizes "
      "(ValueError above 32 KiB in all).");
}

} // namespace bnh
