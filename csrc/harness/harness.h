// Included by each generated kernel translation unit before the .metal
// source: parameter binding of [[kernel]] functions and the harness version
// of instantiate_kernel (kernels/ternary_utils.h defines the Metal one only
// when none is defined yet).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include "param_kind.h"
#include "shim.h"

namespace bnh {

struct Param {
  ParamKind kind;
  int index;
};

template <class A>
A from_u3(U3 v) {
  if constexpr (is_vec<A>::value) {
    using E = typename A::value_type;
    if constexpr (A::size == 3) {
      return A(E(v.x), E(v.y), E(v.z));
    } else {
      return A(E(v.x), E(v.y));
    }
  } else {
    return A(v.x);
  }
}

template <class A>
A bind_arg(const Param& p, const Invocation& inv) {
  using R = std::remove_reference_t<A>;
  if constexpr (std::is_pointer_v<A> || std::is_reference_v<A>) {
    bool tg = p.kind == ParamKind::Threadgroup;
    if (p.kind != ParamKind::Buffer && !tg) {
      kernel_fail("a built-in index parameter has a pointer or reference type");
    }
    size_t n = tg ? inv.num_tg_memory : inv.num_buffers;
    void* ptr = size_t(p.index) < n ? (tg ? inv.tg_memory : inv.buffers)[p.index] : nullptr;
    if (!ptr) {
      kernel_fail(std::string(tg ? "[[threadgroup(" : "[[buffer(") + std::to_string(p.index) + ")]] is not bound");
    }
    if constexpr (std::is_pointer_v<A>) {
      return reinterpret_cast<A>(ptr);
    } else {
      return *reinterpret_cast<R*>(ptr);
    }
  } else {
    const ThreadIds& id = *inv.ids;
    switch (p.kind) {
      case ParamKind::ThreadPositionInGrid:
        return from_u3<A>(id.thread_position_in_grid);
      case ParamKind::ThreadPositionInThreadgroup:
        return from_u3<A>(id.thread_position_in_threadgroup);
      case ParamKind::ThreadgroupPositionInGrid:
        return from_u3<A>(id.threadgroup_position_in_grid);
      case ParamKind::ThreadsPerThreadgroup:
        return from_u3<A>(id.threads_per_threadgroup);
      case ParamKind::ThreadgroupsPerGrid:
        return from_u3<A>(id.threadgroups_per_grid);
      case ParamKind::ThreadsPerGrid:
        return from_u3<A>(id.threads_per_grid);
      case ParamKind::ThreadIndexInThreadgroup:
        return from_u3<A>(U3{id.thread_index_in_threadgroup, 0, 0});
      case ParamKind::ThreadIndexInSimdgroup:
        return from_u3<A>(U3{id.thread_index_in_simdgroup, 0, 0});
      case ParamKind::SimdgroupIndexInThreadgroup:
        return from_u3<A>(U3{id.simdgroup_index_in_threadgroup, 0, 0});
      case ParamKind::ThreadsPerSimdgroup:
        return from_u3<A>(U3{id.threads_per_simdgroup, 0, 0});
      case ParamKind::SimdgroupsPerThreadgroup:
        return from_u3<A>(U3{id.simdgroups_per_threadgroup, 0, 0});
      default:
        kernel_fail("a buffer or threadgroup parameter has a value type");
    }
  }
}

template <size_t N, class... A, size_t... I>
void invoke_impl(void (*fn)(A...), const Param (&p)[N], const Invocation& inv, std::index_sequence<I...>) {
  fn(bind_arg<A>(p[I], inv)...);
}

template <size_t N, class... A>
void invoke(void (*fn)(A...), const Param (&p)[N], const Invocation& inv) {
  static_assert(N == sizeof...(A), "parameter table does not match the kernel signature");
  invoke_impl(fn, p, inv, std::index_sequence_for<A...>{});
}

} // namespace bnh

#define BNH_CAT2(a, b) a##b
#define BNH_CAT(a, b) BNH_CAT2(a, b)
#define instantiate_kernel(name, func, ...)                                              \
  static ::bnh::KernelRegistration BNH_CAT(bnh_reg_, __COUNTER__)(                       \
      name, __FILE__, [](const ::bnh::Invocation& inv) {                                 \
        ::bnh::invoke(&func<__VA_ARGS__>, bnh_params_##func, inv);                       \
      });
