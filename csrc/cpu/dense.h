// Dense float matmul of the CPU kernels: y = x @ W.T with W in float32,
// float16 or bfloat16 (a model's float head, e.g. a tied embedding matrix).
//
// Like kernels.h, plain C++ over pointers and sizes, no MLX types. The ISA
// level and thread count are the ones of kernels.h (active_isa(),
// num_threads()).
#pragma once

#include <cstdint>

namespace bitnet_ext::cpu {

// The storage type of W's elements.
enum class DenseType : int {
  F32 = 0,
  F16 = 1, // IEEE binary16
  BF16 = 2, // bfloat16: the high 16 bits of a float32
};

// y[m, n] = sum_k x[m, k] * W[n, k], accumulated in float32.
//   x: M x K float32 (row stride ldx), w: N x K of `wtype`, row-major and
//   contiguous, y: M x N float32 contiguous.
// M = 1 (and small M) streams W once from memory, converting it on the fly;
// larger M converts W once into float32 panels that every row of x reuses.
// Any K works (no multiple of the vector width needed); K = 0 gives zeros.
void dense_matmul(
    const float* x,
    int64_t ldx,
    const void* w,
    DenseType wtype,
    float* y,
    int64_t M,
    int64_t N,
    int64_t K);

} // namespace bitnet_ext::cpu
