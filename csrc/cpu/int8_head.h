// Int8 x int8 matmul of the CPU kernels: an opt-in int8 model head.
//
// y[m, n] = (float(acc[m, n]) * xscale[m]) * s[n], in that order, in float32
// without FMA contraction, where acc[m, n] = sum_k xq[m, k] * wq[n, k] is the
// exact int32 dot of per-token int8 activations (absmax_quantize of
// kernels.h) with per-row int8 weights. Bit-identical to
// bitnet_ext.reference.int8_matmul. Exact while 128 * 127 * K < 2^31
// (the caller checks K; see arg_checks.h).
//
// Like kernels.h, plain C++ over pointers and sizes; ISA level and thread
// count are the ones of kernels.h (active_isa(), num_threads()).
#pragma once

#include <cstdint>

namespace bitnet_ext::cpu {

//   xq: M x K int8 contiguous, xscale: M floats, wq: N x K int8 row-major
//   contiguous, s: N floats, y: M x N float32 contiguous. K >= 1.
void int8_matmul(
    const int8_t* xq,
    const float* xscale,
    const int8_t* wq,
    const float* s,
    float* y,
    int64_t M,
    int64_t N,
    int64_t K);

} // namespace bitnet_ext::cpu
