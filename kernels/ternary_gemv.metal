// Ternary GEMV (decode), y = x @ (diag(s) W).T: kernels/ternary_gemv.h.
// Transposed GEMV (VJP), y = x @ diag(s) W, N split across the grid, then
// ternary_gemv_n_reduce adds the splits: same header.
// Host names: ternary_gemv_t_<dtype>_bm<BM>, ternary_gemv_n_<dtype>_bm<BM>,
// ternary_gemv_n_reduce_<dtype>
// (csrc/gpu/launch_plan.cpp).
#include "ternary_utils.h"
#include "ternary_gemv.h"

template <typename T, int BM>
[[kernel]] void ternary_gemv_t(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    device T* y [[buffer(3)]],
    constant int& M [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  ternary_gemv_t_impl<T, BM>(x, wq, scale, y, M, N, K, per_row, tgid, sgid, lane);
}

#define instantiate_gemv_t(tname, type, bm) \
  instantiate_kernel("ternary_gemv_t_" #tname "_bm" #bm, ternary_gemv_t, type, bm)

#define instantiate_gemv_t_all_bm(tname, type, unused) \
  instantiate_gemv_t(tname, type, 1)                   \
  instantiate_gemv_t(tname, type, 4)                   \
  instantiate_gemv_t(tname, type, 8)

instantiate_float_types(instantiate_gemv_t_all_bm, 0)

template <typename T, int BM>
[[kernel]] void ternary_gemv_n(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    device float* part [[buffer(3)]],
    constant int& M [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    constant int& rows [[buffer(8)]],
    threadgroup float* partial [[threadgroup(0)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  ternary_gemv_n_impl<T, BM>(x, wq, scale, part, M, N, K, per_row, rows, partial, tgid, tid, sgid, lane);
}

#define instantiate_gemv_n(tname, type, unused)                                        \
  instantiate_kernel("ternary_gemv_n_" #tname "_bm1", ternary_gemv_n, type, 1)         \
  instantiate_kernel("ternary_gemv_n_" #tname "_bm4", ternary_gemv_n, type, 4)

instantiate_float_types(instantiate_gemv_n, 0)

template <typename T>
[[kernel]] void ternary_gemv_n_reduce(
    const device float* part [[buffer(0)]],
    device T* y [[buffer(1)]],
    constant int& count [[buffer(2)]],
    constant int& splits [[buffer(3)]],
    uint i [[thread_position_in_grid]]) {
  ternary_gemv_n_reduce_impl<T>(part, y, count, splits, i);
}

#define instantiate_gemv_n_reduce(tname, type, unused) \
  instantiate_kernel("ternary_gemv_n_reduce_" #tname, ternary_gemv_n_reduce, type)

instantiate_float_types(instantiate_gemv_n_reduce, 0)
