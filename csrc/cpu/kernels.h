// CPU kernels of bitnet_ext: plain C++ over pointers and sizes.
//
// Nothing here knows about MLX: the primitives in csrc/primitives/ own the
// arrays, convert dtypes and call these functions. Keeping the kernels free
// of MLX types lets them be compiled and tested on their own (for example the
// arm64 NEON path cross-compiled and run under qemu-user).
//
// Packed ternary layout (identical to MLX's affine bits=2 layout):
//   row n of W (N x K, K % 16 == 0) is K/16 uint32 words; weight W[n, k]
//   lives in word k / 16 at bits 2*(k % 16) .. 2*(k % 16) + 1 and is stored
//   as code = W[n, k] + 1, so code is 0, 1 or 2. Code 3 is never written by
//   pack; every kernel reads it as code - 1 = +2 (MLX's affine reading), so
//   any uint32 word has one meaning on every path and ISA level.
//
// Non-finite values follow IEEE float32 arithmetic, plus one rule for the
// quantizers: a quotient that is NaN gets code 0 (bitnet_ext.reference). So a
// row with a NaN gets scale NaN and codes 0, one with an inf scale inf and
// codes 0 (finite / inf = 0, inf / inf = NaN).
//
// All matrices are row-major. Row strides are given in elements.
#pragma once

#include <cstdint>

namespace bitnet_ext::cpu {

// Instruction-set levels, from the portable one upward. Each level is a
// separately compiled translation unit; dispatch picks one at run time.
enum class Isa : int {
  Scalar = 0,
  Avx2 = 1, // x86-64: AVX2 + FMA + F16C
  Avx512 = 2, // x86-64: AVX-512 F/BW/VL/DQ
  Avx512Vnni = 3, // x86-64: Avx512 + AVX512_VNNI
  Neon = 4, // arm64: Advanced SIMD
  NeonDot = 5, // arm64: Advanced SIMD + dot product (sdot/udot)
  Avx512Amx = 6, // x86-64: Avx512Vnni + AMX-TILE/INT8/BF16 (Linux, with the kernel's permission)
  Avx512Bf16 = 7, // x86-64: Avx512Vnni + AVX512_BF16 (vdpbf16ps)
};

const char* isa_name(Isa isa);
// The best level this CPU and this build support.
Isa best_isa();
// Whether this CPU and this build can run `isa`.
bool isa_supported(Isa isa);
// The level kernels use now: best_isa(), unless lowered by the environment
// variable BITNET_EXT_ISA (scalar|avx2|avx512|avx512_vnni|avx512_bf16|avx512_amx|neon|neon_dot) or by
// set_isa(). Asking for an unsupported level throws std::invalid_argument.
Isa active_isa();
void set_isa(Isa isa);
void reset_isa(); // back to the environment / best_isa() choice

// Worker threads the kernels split rows over (default: hardware threads, or
// BITNET_EXT_NUM_THREADS). 1 means run on the calling thread only.
int num_threads();
void set_num_threads(int n);

// ---------------------------------------------------------------------------
// Ternary matmul, float activations, float32 accumulation.
//
// transpose=True form:  y[m, n] = s(n) * sum_k x[m, k] * W[n, k]
//   x: M x K (row stride ldx), wq: N x K/16 words, y: M x N contiguous.
// s(n) = scale[n] when per_row_scale, else scale[0].
void ternary_matmul_t(
    const float* x,
    int64_t ldx,
    const uint32_t* wq,
    const float* scale,
    bool per_row_scale,
    float* y,
    int64_t M,
    int64_t N,
    int64_t K);

// transpose=False form: y[m, k] = sum_n x[m, n] * s(n) * W[n, k]
//   x: M x N (row stride ldx), wq: N x K/16 words, y: M x K contiguous.
void ternary_matmul_n(
    const float* x,
    int64_t ldx,
    const uint32_t* wq,
    const float* scale,
    bool per_row_scale,
    float* y,
    int64_t M,
    int64_t N,
    int64_t K);

// ---------------------------------------------------------------------------
// Int8 activations (W1.58A8).
//
// Per-row absmax quantization of x (M x K, row stride ldx):
//   xscale[m] = max(max_k |x[m, k]|, eps) / 127            (float32, NaN if a NaN is in the row)
//   xq[m, k]  = clamp(round_half_even(x[m, k] / xscale[m]), -128, 127)   (0 where the quotient is NaN)
// The division is a true IEEE float32 division (not a reciprocal multiply),
// so results are bit-identical to the pure-MLX reference.
// ActRounding::Transformers rounds as transformers' BitNet activation_quant
// does instead: xq[m, k] = clamp(round_half_even(x[m, k] * inv), -128, 127)
// with inv = (1 / max(max_k |x[m, k]|, eps)) * 127 in float32, which is how
// torch evaluates its `127 / t` (reciprocal, then multiply); xscale is
// unchanged. The two roundings differ on about one code in 10^6.
enum class ActRounding : int { Divide = 0, Transformers = 1 };
void absmax_quantize(
    const float* x,
    int64_t ldx,
    float eps,
    int8_t* xq,
    float* xscale,
    int64_t M,
    int64_t K,
    ActRounding rounding = ActRounding::Divide);

// Exact integer ternary product: acc[m, n] = sum_k xq[m, k] * W[n, k]
// accumulated in int32 (exact for any K < 2^31 / 128).
//   xq: M x K contiguous, acc: M x N contiguous.
void ternary_matmul_i8(
    const int8_t* xq,
    const uint32_t* wq,
    int32_t* acc,
    int64_t M,
    int64_t N,
    int64_t K);

// The fused BitLinear epilogue on top of ternary_matmul_i8:
//   y[m, n] = (float(acc[m, n]) * xscale[m]) * s(n) + bias[n]
// evaluated in that order in float32, without FMA contraction, so it is
// bit-identical to the reference. bias may be null (then nothing is added).
void bitlinear(
    const int8_t* xq,
    const float* xscale,
    const uint32_t* wq,
    const float* scale,
    bool per_row_scale,
    const float* bias,
    float* y,
    int64_t M,
    int64_t N,
    int64_t K);

// ---------------------------------------------------------------------------
// Absmean weight quantization of w (N x K contiguous, K % 16 == 0).
// scale = max(mean |w|, eps) over the whole matrix (scale has 1 element) or
// over each row (scale has N elements); the mean is accumulated in double and
// rounded once to float32. Then code = clamp(round_half_even(w / scale), -1, 1)
// (0 where w / scale is NaN) with a true float32 division, packed into wq
// (N x K/16).
void absmean_quantize(
    const float* w,
    float eps,
    bool per_row_scale,
    uint32_t* wq,
    float* scale,
    int64_t N,
    int64_t K);

// Pack int8 codes in {-1, 0, 1} (N x K, K % 16 == 0) into wq (N x K/16).
// Returns false (and writes nothing meaningful) if a value is outside {-1,0,1}.
bool pack_ternary(const int8_t* w, uint32_t* wq, int64_t N, int64_t K);

// Unpack wq (N x K/16) to int8 codes in {-1, 0, 1} (N x K).
void unpack_ternary(const uint32_t* wq, int8_t* w, int64_t N, int64_t K);

// Dequantize: out[n, k] = s(n) * W[n, k] in float32 (N x K).
void dequantize_ternary(
    const uint32_t* wq,
    const float* scale,
    bool per_row_scale,
    float* out,
    int64_t N,
    int64_t K);

} // namespace bitnet_ext::cpu
