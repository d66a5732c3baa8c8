// Ternary GEMM (prefill) on simdgroup_matrix: kernels/ternary_gemm.h.
// Host names: ternary_gemm_t_<dtype>, ternary_gemm_n_<dtype>,
// bitlinear_gemm_<dtype> (csrc/gpu/launch_plan.cpp).
#include "ternary_utils.h"
#include "ternary_gemm.h"

template <typename T, int MODE>
[[kernel]] void ternary_gemm(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    device T* y [[buffer(3)]],
    constant int& M [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    threadgroup float* smem [[threadgroup(0)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]]) {
  ternary_gemm_impl<T, T, MODE>(x, scale, wq, scale, scale, y, M, N, K, per_row, 0, smem, tgid, tid, sgid);
}

template <typename T>
[[kernel]] void bitlinear_gemm(
    const device int8_t* xq [[buffer(0)]],
    const device float* xscale [[buffer(1)]],
    const device uint* wq [[buffer(2)]],
    const device float* scale [[buffer(3)]],
    const device float* bias [[buffer(4)]],
    device T* y [[buffer(5)]],
    constant int& M [[buffer(6)]],
    constant int& N [[buffer(7)]],
    constant int& K [[buffer(8)]],
    constant int& per_row [[buffer(9)]],
    constant int& has_bias [[buffer(10)]],
    threadgroup float* smem [[threadgroup(0)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]]) {
  ternary_gemm_impl<int8_t, T, GEMM_I8>(xq, xscale, wq, scale, bias, y, M, N, K, per_row, has_bias, smem, tgid, tid,
                                        sgid);
}

#define instantiate_gemm(tname, type, unused)                                  \
  instantiate_kernel("ternary_gemm_t_" #tname, ternary_gemm, type, GEMM_T)     \
  instantiate_kernel("ternary_gemm_n_" #tname, ternary_gemm, type, GEMM_N)     \
  instantiate_kernel("bitlinear_gemm_" #tname, bitlinear_gemm, type)

instantiate_float_types(instantiate_gemm, 0)
