// Packing kernels: kernels/packing.h. Host names: ternary_pack,
// ternary_unpack, ternary_dequantize_<dtype> (csrc/gpu/launch_plan.cpp).
#include "ternary_utils.h"
#include "packing.h"

[[kernel]] void ternary_pack(
    const device int8_t* codes [[buffer(0)]],
    device uint* wq [[buffer(1)]],
    device atomic_uint* invalid [[buffer(2)]],
    constant int& words [[buffer(3)]],
    uint i [[thread_position_in_grid]]) {
  ternary_pack_impl(codes, wq, invalid, words, i);
}

[[kernel]] void ternary_unpack(
    const device uint* wq [[buffer(0)]],
    device int8_t* codes [[buffer(1)]],
    constant int& words [[buffer(2)]],
    uint i [[thread_position_in_grid]]) {
  ternary_unpack_impl(wq, codes, words, i);
}

template <typename T>
[[kernel]] void ternary_dequantize(
    const device uint* wq [[buffer(0)]],
    const device float* scale [[buffer(1)]],
    device T* out [[buffer(2)]],
    constant int& N [[buffer(3)]],
    constant int& K [[buffer(4)]],
    constant int& per_row [[buffer(5)]],
    uint i [[thread_position_in_grid]]) {
  ternary_dequantize_impl<T>(wq, scale, out, N, K, per_row, i);
}

#define instantiate_dequantize(tname, type, unused) \
  instantiate_kernel("ternary_dequantize_" #tname, ternary_dequantize, type)

instantiate_float_types(instantiate_dequantize, 0)
