// Kernels that test the harness itself (tests/test_metal_harness.py,
// test_harness_*): races must be visible across fiber orders, collectives
// must have GPU semantics, divergence and deadlocks must be reported.
// Not part of kernels/ (never shipped, not compiled by xcrun metal).
#include <metal_stdlib>

using namespace metal;

// Thread t writes slot t, then reads slot t + 1 with (fixed = 1) or without
// (fixed = 0) a barrier in between: without it the result depends on order.
[[kernel]] void bnh_check_race(
    device float* out [[buffer(0)]],
    constant int& fixed [[buffer(1)]],
    threadgroup float* slots [[threadgroup(0)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]]) {
  slots[tid] = static_cast<float>(tid) + 1.0f;
  if (fixed) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  } else {
    simdgroup_barrier(mem_flags::mem_none); // a sync point, but not a threadgroup barrier
  }
  out[tid] = slots[(tid + 1) % tsize.x];
}

// out[5 * t + 0..4] = simd_sum, simd_max, simd_shuffle_xor(1), simd_broadcast(3),
// simd_shuffle_down(1) of x[t].
[[kernel]] void bnh_check_simd(
    const device float* x [[buffer(0)]],
    device float* out [[buffer(1)]],
    uint t [[thread_position_in_grid]]) {
  const float v = x[t];
  out[5 * t + 0] = simd_sum(v);
  out[5 * t + 1] = simd_max(v);
  out[5 * t + 2] = simd_shuffle_xor(v, 1);
  out[5 * t + 3] = simd_broadcast(v, 3);
  out[5 * t + 4] = simd_shuffle_down(v, 1);
}

// Lanes 0..15 call simd_sum, lanes 16..31 simd_max: must be reported.
[[kernel]] void bnh_check_divergent(device float* out [[buffer(0)]], uint lane [[thread_index_in_simdgroup]]) {
  out[lane] = lane < 16 ? simd_sum(1.0f) : simd_max(1.0f);
}

// Lanes 0..15 wait at a barrier, lanes 16..31 in a collective: a deadlock.
[[kernel]] void bnh_check_deadlock(device float* out [[buffer(0)]], uint lane [[thread_index_in_simdgroup]]) {
  if (lane < 16) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  } else {
    out[lane] = simd_sum(1.0f);
  }
}

// d = a @ b + c on 8x8 simdgroup matrices (b loaded transposed when
// transpose_b), through device memory loads and stores.
[[kernel]] void bnh_check_mma(
    const device float* a [[buffer(0)]],
    const device float* b [[buffer(1)]],
    const device float* c [[buffer(2)]],
    device float* d [[buffer(3)]],
    constant int& transpose_b [[buffer(4)]],
    uint lane [[thread_index_in_simdgroup]]) {
  simdgroup_float8x8 ma, mb, mc, md;
  simdgroup_load(ma, a, 8);
  simdgroup_load(mb, b, 8, ulong2(0, 0), transpose_b != 0);
  simdgroup_load(mc, c, 8);
  simdgroup_multiply_accumulate(md, ma, mb, mc);
  simdgroup_store(md, d, 8);
}

// bnh_check_race with a threadgroup array declared in the kernel body.
[[kernel]] void bnh_check_race_local(
    device float* out [[buffer(0)]],
    constant int& fixed [[buffer(1)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]]) {
  threadgroup float slots[64];
  threadgroup float* mine = slots + tid;
  *mine = static_cast<float>(tid) + 1.0f;
  if (fixed) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
  } else {
    simdgroup_barrier(mem_flags::mem_none);
  }
  out[tid] = slots[(tid + 1) % tsize.x];
}

// Threadgroup memory handed to another thread across a barrier whose mem_flags
// are `flags` (0: mem_none, 2: mem_threadgroup): only the latter is valid MSL.
[[kernel]] void bnh_check_barrier_flags(
    device float* out [[buffer(0)]],
    constant int& flags [[buffer(1)]],
    threadgroup float* slots [[threadgroup(0)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]]) {
  slots[tid] = static_cast<float>(tid) + 1.0f;
  threadgroup_barrier(flags ? mem_flags::mem_threadgroup : mem_flags::mem_none);
  out[tid] = slots[(tid + 1) % tsize.x];
}

// The upper half of the threadgroup returns before a barrier when `early` is set.
[[kernel]] void bnh_check_barrier_after_return(
    device float* out [[buffer(0)]],
    constant int& early [[buffer(1)]],
    uint tid [[thread_index_in_threadgroup]],
    uint3 tsize [[threads_per_threadgroup]]) {
  if (early && tid >= tsize.x / 2) {
    return;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  out[tid] = 1.0f;
}
