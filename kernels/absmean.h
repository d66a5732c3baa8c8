// Absmean weight quantization (BitNet b1.58): scale = max(mean |w|, eps) per
// tensor or per row, codes = clamp(rint(w / scale), -1, 1), packed 16 per
// uint32. The mean is accumulated in float-float (ternary_utils.h), the GPU's
// stand-in for the float64 accumulation of the CPU kernel and the reference,
// and rounded once to float32.
#pragma once

#include "ternary_utils.h"

// Sum of one ffloat per thread over the threadgroup, in a fixed order. The
// total is valid in thread 0. red: threadgroup memory of 2 * 32 floats.
inline ffloat simd_ff_sum(ffloat v) {
  for (ushort d = 16; d >= 1; d >>= 1) {
    ffloat o;
    o.hi = simd_shuffle_xor(v.hi, d);
    o.lo = simd_shuffle_xor(v.lo, d);
    v = ff_add(v, o);
  }
  return v;
}

inline ffloat threadgroup_ff_sum(ffloat v, threadgroup float* red, uint sgid, uint lane, uint simdgroups) {
  v = simd_ff_sum(v);
  if (lane == 0) {
    red[2 * sgid] = v.hi;
    red[2 * sgid + 1] = v.lo;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  ffloat t = ff_make(0.0f);
  if (sgid == 0) {
    if (lane < simdgroups) {
      t.hi = red[2 * lane];
      t.lo = red[2 * lane + 1];
    }
    t = simd_ff_sum(t);
  }
  return t;
}

// The packed word of 16 weights w[0..15] with scale s (code 0 where w / s
// is NaN: a NaN or inf scale, from a NaN or inf weight, zeroes its codes).
template <typename T>
inline uint quantize_pack16(const device T* w, float s) {
  uint word = 0;
  for (int j = 0; j < 16; ++j) {
    const int q = quantize_code(precise::divide(static_cast<float>(w[j]), s), -1.0f, 1.0f);
    word |= static_cast<uint>(q + 1) << (2 * j);
  }
  return word;
}

// One threadgroup per row n of w (N x K). per_row: scale[n] and the packed
// row n. Otherwise: the row's float-float sum of |w| into partial[2n, 2n+1].
template <typename T>
inline void absmean_rows_impl(
    const device T* w,
    device uint* wq,
    device float* scale,
    device float* partial,
    int K,
    int per_row,
    float eps,
    threadgroup float* red,
    uint n,
    uint tid,
    uint threads,
    uint sgid,
    uint lane,
    uint simdgroups) {
  w += static_cast<ulong>(n) * K;
  ffloat acc = ff_make(0.0f);
  for (int k = static_cast<int>(tid); k < K; k += static_cast<int>(threads)) {
    acc = ff_add_f(acc, fabs(static_cast<float>(w[k])));
  }
  const ffloat total = threadgroup_ff_sum(acc, red, sgid, lane, simdgroups);
  if (!per_row) {
    if (tid == 0) {
      partial[2 * n] = total.hi;
      partial[2 * n + 1] = total.lo;
    }
    return;
  }
  // All reads of red happened inside threadgroup_ff_sum (simdgroup 0, which
  // thread 0 belongs to); the barrier publishes the scale.
  if (tid == 0) {
    const float s = max_nan(ff_div(total, ff_from_count(static_cast<ulong>(K))), eps);
    scale[n] = s;
    red[0] = s;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  const float s = red[0];
  const int words = K / 16;
  for (int wi = static_cast<int>(tid); wi < words; wi += static_cast<int>(threads)) {
    wq[static_cast<ulong>(n) * words + wi] = quantize_pack16(w + wi * 16, s);
  }
}

// Per-tensor scale from the row partial sums (one threadgroup).
inline void absmean_finalize_impl(
    const device float* partial,
    device float* scale,
    int N,
    int K,
    float eps,
    threadgroup float* red,
    uint tid,
    uint threads,
    uint sgid,
    uint lane,
    uint simdgroups) {
  ffloat acc = ff_make(0.0f);
  for (int n = static_cast<int>(tid); n < N; n += static_cast<int>(threads)) {
    ffloat p;
    p.hi = partial[2 * n];
    p.lo = partial[2 * n + 1];
    acc = ff_add(acc, p);
  }
  const ffloat total = threadgroup_ff_sum(acc, red, sgid, lane, simdgroups);
  if (tid == 0) {
    const ffloat count = ff_from_count(static_cast<ulong>(N) * static_cast<ulong>(K));
    scale[0] = max_nan(ff_div(total, count), eps);
  }
}

// One thread per packed word: wq[i] from w[16 i .. 16 i + 15].
template <typename T>
inline void absmean_pack_impl(
    const device T* w,
    const device float* scale,
    device uint* wq,
    int N,
    int K,
    int per_row,
    uint i) {
  const int words = K / 16;
  if (static_cast<ulong>(i) >= static_cast<ulong>(N) * words) {
    return;
  }
  const int n = static_cast<int>(i / static_cast<uint>(words));
  wq[i] = quantize_pack16(w + static_cast<ulong>(i) * 16, row_scale(scale, per_row, n));
}
