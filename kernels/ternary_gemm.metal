// Ternary GEMM (prefill) on simdgroup_matrix: kernels/ternary_gemm.h.
// Host names: ternary_gemm_t_<dtype>_bm<BM>_bn<BN>, ternary_gemm_n_<...>,
// bitlinear_gemm_<...> (csrc/gpu/launch_plan.cpp chooses BM x BN).
#include "ternary_utils.h"
#include "ternary_gemm.h"

// y = x @ (s W).T: x tile in T, weight tile in half (exact codes).
template <typename T, int BM, int BN>
[[kernel]] void ternary_gemm_t(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    device T* y [[buffer(3)]],
    constant int& M [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    threadgroup T* As [[threadgroup(0)]],
    threadgroup half* Bs [[threadgroup(1)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  ternary_gemm_impl<T, T, half, T, GEMM_T, BM, BN>(x, scale, wq, scale, scale, y, M, N, K, per_row, 0, As, Bs, tgid,
                                                    tid, sgid, lane);
}

// y = x @ diag(s) W (the VJP): x tile in T, weight tile in float (s(n) W).
template <typename T, int BM, int BN>
[[kernel]] void ternary_gemm_n(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    device T* y [[buffer(3)]],
    constant int& M [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    threadgroup T* As [[threadgroup(0)]],
    threadgroup float* Bs [[threadgroup(1)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  ternary_gemm_impl<T, T, float, T, GEMM_N, BM, BN>(x, scale, wq, scale, scale, y, M, N, K, per_row, 0, As, Bs, tgid,
                                                     tid, sgid, lane);
}

// BitLinear: xq (int8) and the weights both staged as half (exact).
template <typename T, int BM, int BN>
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
    threadgroup half* As [[threadgroup(0)]],
    threadgroup half* Bs [[threadgroup(1)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  ternary_gemm_impl<int8_t, half, half, T, GEMM_I8, BM, BN>(xq, xscale, wq, scale, bias, y, M, N, K, per_row, has_bias,
                                                            As, Bs, tgid, tid, sgid, lane);
}

// The tiles the launch plan can choose (kGemmTilesFloat, kGemmTilesInt8).
#define instantiate_gemm_float_tile(tname, type, bm, bn)                                          \
  instantiate_kernel("ternary_gemm_t_" #tname "_bm" #bm "_bn" #bn, ternary_gemm_t, type, bm, bn) \
  instantiate_kernel("ternary_gemm_n_" #tname "_bm" #bm "_bn" #bn, ternary_gemm_n, type, bm, bn)

#define instantiate_gemm(tname, type, unused)                                                      \
  instantiate_gemm_float_tile(tname, type, 64, 64)                                                 \
  instantiate_gemm_float_tile(tname, type, 32, 64)                                                 \
  instantiate_gemm_float_tile(tname, type, 32, 32)                                                 \
  instantiate_kernel("bitlinear_gemm_" #tname "_bm32_bn64", bitlinear_gemm, type, 32, 64)         \
  instantiate_kernel("bitlinear_gemm_" #tname "_bm32_bn32", bitlinear_gemm, type, 32, 32)

instantiate_float_types(instantiate_gemm, 0)
