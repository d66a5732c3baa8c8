// Backend-neutral launch plans of the bitnet_ext GPU kernels (kernels/*.metal).
//
// Every launch decision lives here, once: which kernel (its host name, built
// from template arguments like MLX does: "<op>_<dtype>_<variant>"), how many
// threadgroups and threads, which array goes to which [[buffer(i)]], which
// constants are set with set_bytes, how much [[threadgroup(i)]] memory, and
// which temporaries the plan needs between its kernels. The Metal eval_gpu
// (csrc/gpu/, under _METAL_) and the CPU shader harness (csrc/harness/) both
// execute these plans, so the harness tests exactly what the GPU runs.
//
// No Metal types, no MLX types: plain structs. See csrc/gpu/LAUNCH_PLAN.md.
//
// Executing a plan (host side, per KernelLaunch in order):
//   kernel = library.get_kernel(launch.name)
//   for b in launch.buffers:   bind (input b.index | output b.index | temp b.index) at [[buffer(b.slot)]]
//   for c in launch.constants: set_bytes(c.i32 or c.f32, 4 bytes, [[buffer(c.slot)]])
//   for t in launch.threadgroup_memory: set_threadgroup_memory_length(t.bytes, [[threadgroup(t.slot)]])
//   dispatch_threadgroups(launch.grid /* threadgroups */, launch.group /* threads per threadgroup */)
// Temporaries (plan.temporaries) are allocated before the first launch
// (zero-filled when zero_init) and live until the last launch has run.
//
// Preconditions for every plan (the host establishes them, e.g. by copying):
// every input and output is row-contiguous (C order, no gaps, any buffer
// offset that is a multiple of its element size), outputs are freshly
// allocated, and shapes are valid (the ops in csrc/ops.cpp already checked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bitnet_ext::gpu {

// Float dtypes of activations / outputs. Names follow MLX's type_to_name.
enum class Dtype : int { float32 = 0, float16 = 1, bfloat16 = 2 };
const char* dtype_name(Dtype d); // "float32", "float16", "bfloat16"
size_t dtype_size(Dtype d);      // 4, 2, 2

struct Dim3 {
  uint32_t x = 1, y = 1, z = 1;
};

// What goes into one [[buffer(slot)]] argument.
enum class ArgKind : int {
  Input = 0,  // inputs[index] of the primitive (order: see each plan_* below)
  Output = 1, // outputs[index] of the primitive
  Temp = 2,   // plan.temporaries[index]
};

struct BufferBinding {
  ArgKind kind;
  int index; // into inputs / outputs / temporaries
  int slot;  // the kernel's [[buffer(slot)]]
};

// A 4-byte scalar set with set_bytes at [[buffer(slot)]] (declared in the
// kernel as `constant int& name [[buffer(slot)]]` or `constant float& ...`).
struct Constant {
  enum class Type : int { Int32 = 0, Float32 = 1 };
  std::string name; // the kernel parameter's name (documentation, debugging)
  int slot;
  Type type;
  int32_t i32 = 0;
  float f32 = 0.0f;
};

// [[threadgroup(slot)]] memory of `bytes` bytes (a multiple of 16).
struct ThreadgroupMemory {
  int slot;
  size_t bytes;
};

struct Temporary {
  std::string name; // e.g. "xq" (documentation, debugging)
  size_t bytes;
  bool zero_init; // must be zero-filled before the first launch
};

struct KernelLaunch {
  std::string name; // the kernel's [[host_name]]
  Dim3 grid;        // number of threadgroups (dispatch_threadgroups)
  Dim3 group;       // threads per threadgroup
  std::vector<BufferBinding> buffers;
  std::vector<Constant> constants;
  std::vector<ThreadgroupMemory> threadgroup_memory;
};

struct LaunchPlan {
  std::vector<Temporary> temporaries;
  std::vector<KernelLaunch> kernels; // run in this order on one stream
};

// ---------------------------------------------------------------------------
// One function per primitive. Inputs / outputs are numbered as the primitive
// (csrc/primitives/*.h, built in csrc/ops.cpp) holds them.

// TernaryMatmul.   inputs: 0 x (T, M rows of K or N), 1 wq (uint32 N x K/16),
//                  2 scale (float32, 1 or N elements).  outputs: 0 y (T).
// transpose=true:  y (M x N) = x (M x K) @ (diag(s) W).T
// transpose=false: y (M x K) = x (M x N) @ diag(s) W
// M = x.size() / x.shape(-1) (leading batch axes flattened). K % 16 == 0.
// wq_byte_offset: wq's offset in its buffer in bytes (kept for kernels that
// would need aligned vector loads of W; none does now, the GEMV loads words).
struct TernaryMatmulArgs {
  int64_t M, N, K;
  Dtype dtype;
  bool transpose = true;
  bool per_row_scale = false;
  int64_t wq_byte_offset = 0;
  // > 0: the GEMM tile (BM x BN) for M > 16 instead of the plan's choice (a
  // test and measurement switch; an instantiated tile or std::invalid_argument).
  int gemm_bm = 0, gemm_bn = 0;
};
LaunchPlan plan_ternary_matmul(const TernaryMatmulArgs& a);
inline LaunchPlan plan_ternary_matmul(
    int64_t M, int64_t N, int64_t K, Dtype dtype, bool transpose, bool per_row_scale) {
  return plan_ternary_matmul(TernaryMatmulArgs{M, N, K, dtype, transpose, per_row_scale, 0});
}

// AbsmaxQuantize.  inputs: 0 x (T, M rows of K).  outputs: 0 xq (int8 M x K),
//                  1 xscale (float32, M).
LaunchPlan plan_absmax_quantize(int64_t M, int64_t K, Dtype dtype, float eps);

// BitLinear.       inputs: 0 x (T, M x K), 1 wq, 2 scale (float32, 1 or N),
//                  3 bias (float32 N, only when has_bias).  outputs: 0 y (T, M x N).
// M = 1 (decode, K <= 4096): one kernel, bitlinear_fused_<T> (each
// threadgroup quantizes x into threadgroup memory). Otherwise two: absmax_quantize
// into temporaries (xq int8 M x K, xscale float32 M), then the exact int8 x
// ternary product with the fused epilogue
// y = T(((float(acc) * xscale[m]) * s(n)) + bias[n]).
struct BitLinearArgs {
  int64_t M, N, K;
  Dtype dtype;
  bool per_row_scale = false;
  bool has_bias = false;
  float eps = 1e-5f;
  int64_t wq_byte_offset = 0;
  // false: the two-kernel plan at M = 1 too (a measurement and test switch:
  // the fused kernel is measured faster at every decode shape, metal-designs.md).
  bool allow_fused = true;
  // > 0: the int8 GEMM's tile, as TernaryMatmulArgs::gemm_bm / gemm_bn.
  int gemm_bm = 0, gemm_bn = 0;
};
LaunchPlan plan_bitlinear(const BitLinearArgs& a);
inline LaunchPlan plan_bitlinear(
    int64_t M, int64_t N, int64_t K, Dtype dtype, bool per_row_scale, bool has_bias, float eps = 1e-5f) {
  return plan_bitlinear(BitLinearArgs{M, N, K, dtype, per_row_scale, has_bias, eps, 0});
}

// AbsmeanQuantize. inputs: 0 w (T, N x K).  outputs: 0 wq (uint32 N x K/16),
//                  1 scale (float32, N when per_row else 1).
// per_row: one kernel (row reduction + quantize-and-pack of that row).
// per tensor: row partial sums -> finalize (one threadgroup) -> pack.
LaunchPlan plan_absmean_quantize(int64_t N, int64_t K, Dtype dtype, bool per_row, float eps);

// TernaryPack.     inputs: 0 codes (int8 N x K).  outputs: 0 wq (uint32 N x K/16).
// Temporary 0 "invalid" (uint32, zero_init): set non-zero by the kernel when a
// code is outside {-1, 0, 1}; the host may read it after completion (or ignore
// it: the packed output then holds clamped garbage for those words).
LaunchPlan plan_pack(int64_t N, int64_t K);

// TernaryUnpack.   inputs: 0 wq (uint32 N x K/16).  outputs: 0 codes (int8 N x K).
LaunchPlan plan_unpack(int64_t N, int64_t K);

// TernaryDequantize. inputs: 0 wq, 1 scale (float32, 1 or N).
//                  outputs: 0 out (dtype, N x K) = T(s(n) * W[n, k]).
LaunchPlan plan_dequantize(int64_t N, int64_t K, Dtype dtype, bool per_row_scale);

// ---------------------------------------------------------------------------
// Every kernel host name the plans can produce (the harness and the macOS
// build use it to check that kernels/ instantiates each one).
std::vector<std::string> all_kernel_names();

// Threadgroup memory one kernel may use on every Apple GPU (32 KiB): each plan
// checks each of its kernels against it (check_threadgroup_memory throws
// std::invalid_argument naming the kernel and the bytes).
constexpr size_t kMaxThreadgroupMemory = 32768;
void check_threadgroup_memory(const KernelLaunch& k);

// Human-readable dump of a plan (debugging, BITNET_EXT_PRINT_PLANS).
std::string describe(const LaunchPlan& plan);

} // namespace bitnet_ext::gpu
