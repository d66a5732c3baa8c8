// W1.58A8 BitLinear: absmax int8 quantization of activations and the exact
// int8 x ternary GEMV (kernels/bitlinear.h); the prefill GEMM is in
// ternary_gemm.metal. Host names: absmax_quantize_<dtype>,
// bitlinear_gemv_<dtype>_bm<BM>, bitlinear_fused_<dtype> (csrc/gpu/launch_plan.cpp).
#include "ternary_utils.h"
#include "bitlinear.h"

template <typename T>
[[kernel]] void absmax_quantize(
    const device T* x [[buffer(0)]],
    device int8_t* xq [[buffer(1)]],
    device float* xscale [[buffer(2)]],
    constant int& K [[buffer(3)]],
    constant float& eps [[buffer(4)]],
    threadgroup float* smax [[threadgroup(0)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]],
    uint simdgroups [[simdgroups_per_threadgroup]]) {
  absmax_quantize_impl<T>(x, xq, xscale, K, eps, smax, tgid.x, tid, tsize.x, sgid, lane, simdgroups);
}

template <typename T, int BM>
[[kernel]] void bitlinear_gemv(
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
    uint3 tgid [[threadgroup_position_in_grid]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  bitlinear_gemv_impl<T, BM>(xq, xscale, wq, scale, bias, y, M, N, K, per_row, has_bias, tgid, sgid, lane);
}

template <typename T>
[[kernel]] void bitlinear_fused(
    const device T* x [[buffer(0)]],
    const device uint* wq [[buffer(1)]],
    const device float* scale [[buffer(2)]],
    const device float* bias [[buffer(3)]],
    device T* y [[buffer(4)]],
    constant int& N [[buffer(5)]],
    constant int& K [[buffer(6)]],
    constant int& per_row [[buffer(7)]],
    constant int& has_bias [[buffer(8)]],
    constant float& eps [[buffer(9)]],
    threadgroup int8_t* xq [[threadgroup(0)]],
    threadgroup float* red [[threadgroup(1)]],
    uint3 tgid [[threadgroup_position_in_grid]],
    uint tid [[thread_index_in_threadgroup]],
    uint sgid [[simdgroup_index_in_threadgroup]],
    uint lane [[thread_index_in_simdgroup]]) {
  bitlinear_fused_impl<T>(x, wq, scale, bias, y, N, K, per_row, has_bias, eps, xq, red, tgid, tid, sgid, lane);
}

#define instantiate_bitlinear(tname, type, unused)                                   \
  instantiate_kernel("absmax_quantize_" #tname, absmax_quantize, type)               \
  instantiate_kernel("bitlinear_gemv_" #tname "_bm1", bitlinear_gemv, type, 1)       \
  instantiate_kernel("bitlinear_gemv_" #tname "_bm4", bitlinear_gemv, type, 4)       \
  instantiate_kernel("bitlinear_gemv_" #tname "_bm8", bitlinear_gemv, type, 8)       \
  instantiate_kernel("bitlinear_fused_" #tname, bitlinear_fused, type)

instantiate_float_types(instantiate_bitlinear, 0)
