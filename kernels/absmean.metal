// Absmean weight quantization: kernels/absmean.h. Host names:
// absmean_rows_<dtype>, absmean_finalize, absmean_pack_<dtype>
// (csrc/gpu/launch_plan.cpp).
#include "ternary_utils.h"
#include "absmean.h"

template <typename T>
[[kernel]] void absmean_rows(
    const device T* w [[buffer(0)]],
    device uint* wq [[buffer(1)]],
    device float* scale [[buffer(2)]],
    device float* partial [[buffer(3)]],
    constant int& K [[buffer(4)]],
    constant int& per_row [[buffer(5)]],
    constant float& eps [[buffer(6)]],
    threadgroup float* red [[threadgroup(0)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint simdgroups [[simdgroups_per_threadgroup]]) {
  absmean_rows_impl<T>(w, wq, scale, partial, K, per_row, eps, red, tgid.x, tid, tsize.x, sgid, lane, simdgroups);
}

[[kernel]] void absmean_finalize(
    const device float* partial [[buffer(0)]],
    device float* scale [[buffer(1)]],
    constant int& N [[buffer(2)]],
    constant int& K [[buffer(3)]],
    constant float& eps [[buffer(4)]],
    threadgroup float* red [[threadgroup(0)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint simdgroups [[simdgroups_per_threadgroup]]) {
  absmean_finalize_impl(partial, scale, N, K, eps, red, tid, tsize.x, sgid, lane, simdgroups);
}

template <typename T>
[[kernel]] void absmean_pack(
    const device T* w [[buffer(0)]],
    const device float* scale [[buffer(1)]],
    device uint* wq [[buffer(2)]],
    constant int& N [[buffer(3)]],
    constant int& K [[buffer(4)]],
    constant int& per_row [[buffer(5)]],
    uint i [[thread_position_in_grid]]) {
  absmean_pack_impl<T>(w, scale, wq, N, K, per_row, i);
}

#define instantiate_absmean(tname, type, unused)                    \
  instantiate_kernel("absmean_rows_" #tname, absmean_rows, type)    \
  instantiate_kernel("absmean_pack_" #tname, absmean_pack, type)

instantiate_float_types(instantiate_absmean, 0)
