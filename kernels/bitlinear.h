// The W1.58A8 path: per-token absmax int8 quantization of activations, and
// the exact int8 x ternary product with BitLinear's epilogue.
#pragma once

#include "ternary_utils.h"

// One threadgroup per row m of x (M x K, any K):
//   xscale[m] = max(max_k |x[m, k]|, eps) / 127     (NaN if the row has a NaN)
//   xq[m, k]  = clamp(rint(x[m, k] / xscale[m]), -128, 127)   (0 for a NaN quotient)
// with IEEE divisions (bit-identical to bitnet_ext.reference.absmax_quantize).
// max |x| is reduced over abs_bits (ternary_utils.h), which keeps NaN.
template <typename T>
inline void absmax_quantize_impl(
    const device T* x,
    device int8_t* xq,
    device float* xscale,
    int K,
    float eps,
    threadgroup float* smax, // [32]
    uint m,
    uint tid,
    uint threads,
    uint sgid,
    uint lane,
    uint simdgroups) {
  x += static_cast<ulong>(m) * K;
  xq += static_cast<ulong>(m) * K;
  uint amax = 0;
  for (int k = static_cast<int>(tid); k < K; k += static_cast<int>(threads)) {
    amax = max(amax, abs_bits(static_cast<float>(x[k])));
  }
  amax = simd_max(amax);
  if (lane == 0) {
    smax[sgid] = as_type<float>(amax);
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (sgid == 0) {
    uint v = lane < simdgroups ? as_type<uint>(smax[lane]) : 0u;
    v = simd_max(v);
    if (lane == 0) {
      smax[0] = as_type<float>(v);
    }
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float s = precise::divide(max_nan(smax[0], eps), 127.0f);
  if (tid == 0) {
    xscale[m] = s;
  }
  for (int k = static_cast<int>(tid); k < K; k += static_cast<int>(threads)) {
    xq[k] = static_cast<int8_t>(quantize_code(precise::divide(static_cast<float>(x[k]), s), -128.0f, 127.0f));
  }
}

// y[m, n] = T(((float(acc) * xscale[m]) * s(n)) + bias[n]), acc the exact int32
// sum_k xq[m, k] W[n, k]: bit-identical to bitnet_ext.reference.bitlinear,
// which rounds the product before adding the bias. A compiler that contracts
// (a Metal compiler may; its default is undocumented, and separate statements
// do not stop -ffp-contract=fast) would turn product + bias into one fma. The
// rounded product therefore goes through a volatile variable: the add reads a
// stored value, not a multiply, under any contraction setting (one store and
// load per output, in the epilogue only).
template <typename T>
inline void bitlinear_store(
    device T* y,
    int acc,
    float xs,
    float s,
    const device float* bias,
    int has_bias,
    int n) {
  volatile float product = (static_cast<float>(acc) * xs) * s;
  float v = product;
  if (has_bias) {
    const float b = bias[n];
    v = v + b;
  }
  *y = static_cast<T>(v);
}

// Decode GEMV on int8 activations: the layout of ternary_gemv_t (TGV_ROWS rows
// of W per simdgroup, TGV_SIMDGROUPS simdgroups, lanes split K word by word,
// coalesced), with exact int32 accumulation: sum xq * code - sum xq.
#define BLG_ROWS 4
#define BLG_SIMDGROUPS 2

// XQ / XS: device pointers (xq, xscale from absmax_quantize) or threadgroup
// pointers (bitlinear_fused_impl).
template <typename T, int BM, typename XQ, typename XS>
inline void bitlinear_gemv_impl(
    XQ xq,
    XS xscale,
    const device uint* wq,
    const device float* scale,
    const device float* bias,
    device T* y,
    int M,
    int N,
    int K,
    int per_row,
    int has_bias,
    uint3 tgid,
    uint sgid,
    uint lane) {
  const int words = K / 16;
  const int row0 = (static_cast<int>(tgid.x) * BLG_SIMDGROUPS + static_cast<int>(sgid)) * BLG_ROWS;
  const int m0 = static_cast<int>(tgid.y) * BM;
  const int mrows = min(BM, M - m0);
  xq += static_cast<ulong>(m0) * K;

  const device uint* wrow[BLG_ROWS];
  for (int r = 0; r < BLG_ROWS; ++r) {
    wrow[r] = wq + static_cast<ulong>(min(row0 + r, N - 1)) * words;
  }
  int acc[BM * BLG_ROWS];
  for (int i = 0; i < BM * BLG_ROWS; ++i) {
    acc[i] = 0;
  }
  for (int wi = static_cast<int>(lane); wi < words; wi += 32) {
    // Each word decoded once, then reused for the BM rows of xq.
    int codes[BLG_ROWS][16];
    for (int r = 0; r < BLG_ROWS; ++r) {
      decode_codes16_i32(wrow[r][wi], codes[r]);
    }
    for (int m = 0; m < BM; ++m) {
      if (m < mrows) {
        int q[16];
        const int qsum = load_q16(xq + static_cast<ulong>(m) * K + wi * 16, q);
        for (int r = 0; r < BLG_ROWS; ++r) {
          acc[m * BLG_ROWS + r] += dot16_i32(codes[r], q) - qsum;
        }
      }
    }
  }
  for (int m = 0; m < BM; ++m) {
    if (m < mrows) {
      const float xs = xscale[m0 + m];
      for (int r = 0; r < BLG_ROWS; ++r) {
        const int total = simd_sum(acc[m * BLG_ROWS + r]);
        const int n = row0 + r;
        if (lane == static_cast<uint>(r) && n < N) {
          bitlinear_store(y + static_cast<ulong>(m0 + m) * N + n, total, xs, row_scale(scale, per_row, n), bias,
                          has_bias, n);
        }
      }
    }
  }
}

// Decode (M = 1) BitLinear in one kernel: every threadgroup quantizes the
// activation row into threadgroup memory (K int8), exactly as
// absmax_quantize_impl does, then runs the int8 GEMV on it. Saves the
// quantization launch and the round trip of xq through device memory.
template <typename T>
inline void bitlinear_fused_impl(
    const device T* x,
    const device uint* wq,
    const device float* scale,
    const device float* bias,
    device T* y,
    int N,
    int K,
    int per_row,
    int has_bias,
    float eps,
    threadgroup int8_t* xq,  // [K]
    threadgroup float* red,  // [BLG_SIMDGROUPS + 1]
    uint3 tgid,
    uint tid,
    uint sgid,
    uint lane) {
  const int threads = 32 * BLG_SIMDGROUPS;
  uint amax = 0;
  for (int k = static_cast<int>(tid); k < K; k += threads) {
    amax = max(amax, abs_bits(static_cast<float>(x[k])));
  }
  amax = simd_max(amax);
  if (lane == 0) {
    red[sgid] = as_type<float>(amax);
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  uint total = as_type<uint>(red[0]);
  for (int g = 1; g < BLG_SIMDGROUPS; ++g) {
    total = max(total, as_type<uint>(red[g]));
  }
  const float s = precise::divide(max_nan(as_type<float>(total), eps), 127.0f);
  if (tid == 0) {
    red[BLG_SIMDGROUPS] = s;
  }
  for (int k = static_cast<int>(tid); k < K; k += threads) {
    xq[k] = static_cast<int8_t>(quantize_code(precise::divide(static_cast<float>(x[k]), s), -128.0f, 127.0f));
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  bitlinear_gemv_impl<T, 1>(static_cast<const threadgroup int8_t*>(xq),
                            static_cast<const threadgroup float*>(red + BLG_SIMDGROUPS), wq, scale, bias, y, 1, N, K,
                            per_row, has_bias, tgid, sgid, lane);
}
