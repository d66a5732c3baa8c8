// Launch plans of the bitnet_ext GPU kernels: the one decision table shared by
// the Metal eval_gpu and the CPU shader harness. See launch_plan.h and
// LAUNCH_PLAN.md; the kernels' buffer slots are in kernels/*.metal.
#include "gpu/launch_plan.h"

#include "gpu/plan_builders.h"

#include <sstream>
#include <stdexcept>

namespace bitnet_ext::gpu {

const char* dtype_name(Dtype d) {
  switch (d) {
    case Dtype::float32:
      return "float32";
    case Dtype::float16:
      return "float16";
    case Dtype::bfloat16:
      return "bfloat16";
  }
  throw std::invalid_argument("bitnet_ext: unknown dtype");
}

size_t dtype_size(Dtype d) {
  return d == Dtype::float32 ? 4 : 2;
}

namespace {

using namespace plan_builders;

// ---- tunables (one place; tune on Apple GPUs) ------------------------------
// Ternary GEMV (transpose=true): rows of W per simdgroup and simdgroups per
// threadgroup; must match kernels/ternary_gemv.h (TGV_ROWS, TGV_SIMDGROUPS).
constexpr int kGemvRows = 4;
constexpr int kGemvSimdgroups = 2;
constexpr int kGemvRowsPerGroup = kGemvRows * kGemvSimdgroups;
// Transposed GEMV (transpose=false): simdgroups splitting N in a threadgroup,
// and rows of W per threadgroup when N is split across the grid (16 rows per
// simdgroup; the partial sums, splits x M x K floats, meet in a second kernel).
constexpr int kGemvNSimdgroups = 8;
constexpr int64_t kGemvNRowsPerSplit = 16 * kGemvNSimdgroups;
// GEMM (kernels/ternary_gemm.h): 128 threads (2 x 2 simdgroups) per BM x BN
// output tile, reduction steps of kGemmBK, every threadgroup tile row padded
// by kGemmPadBytes. The tiles instantiated in kernels/ternary_gemm.metal,
// largest first: the plan takes the first whose grid has at least
// kGemmMinThreadgroups threadgroups, else the last. Measured on the H200
// through the CUDA shim (bench/results/metal-designs.md), over the 2B-4T
// projections at M in {32, 128, 512, 2048}: 64 x 64 wins once its grid fills
// the GPU several times over, 32 x 32 while the grid is small; any threshold
// between 400 and 600 picks within 0.3% of the best tile on average (worst
// case 8%). 64 x 32 never won and is not instantiated; the int8 GEMM lost
// with BM = 64 at every shape (by 1-20% at M = 2048), so it keeps BM = 32.
// On Apple GPUs, with 10 to 40 cores instead of 132 SMs, the threshold is
// likely lower: bench/bench_metal.py times every tile (BITNET_EXT_GEMM_TILE).
constexpr int kGemmThreads = 128;
constexpr int kGemmBK = 32;
constexpr size_t kGemmPadBytes = 16;
struct GemmTile {
  int bm, bn;
};
constexpr GemmTile kGemmTilesFloat[] = {{64, 64}, {32, 64}, {32, 32}}; // ternary_gemm_t / _n
constexpr GemmTile kGemmTilesInt8[] = {{32, 64}, {32, 32}};           // bitlinear_gemm
constexpr int64_t kGemmMinThreadgroups = 512;
// M above which the tiled simdgroup_matrix GEMM replaces the GEMV family.
constexpr int64_t kGemvMaxM = 16;
// Decode BitLinear (M = 1) in one kernel up to this K, absmax_quantize + the
// int8 GEMV bm1 above it. Measured (H200 through the CUDA shim,
// bench/results/metal-designs.md): the fused kernel is 2-8% faster at
// K = 2560 and 10% slower at K = 6912 (likely because each of its N/8
// threadgroups quantizes the whole row again). The cut between the two
// measured K is a choice, not a measurement.
constexpr int64_t kFusedMaxK = 4096;
// Integer exactness of the int8 GEMM (float32 accumulation of integer
// products): |xq| <= 128 and |W| <= 2 (code 3 reads as +2), so every partial
// sum is an integer of magnitude <= 256 K <= 2^24.
constexpr int64_t kI8GemmMaxK = int64_t(1) << 16;
// Elementwise kernels (pack, unpack, dequantize, absmean pack): threads per
// threadgroup; each thread handles one uint32 word (16 codes).
constexpr int kElemThreads = 256;
// Row reductions (absmax, absmean): threads per threadgroup, one row each.
constexpr int kRowThreads = 256;

// Push k after checking its threadgroup memory against Apple's limit (every
// plan goes through here, so no kernel can ask a Mac for more than it has).
void push(LaunchPlan& p, const KernelLaunch& k) {
  check_threadgroup_memory(k);
  p.kernels.push_back(k);
}

std::string name(const std::string& op, Dtype d, const std::string& variant = "") {
  std::string s = op + "_" + dtype_name(d);
  if (!variant.empty()) {
    s += "_" + variant;
  }
  return s;
}

int gemv_bm(int64_t M) {
  return M <= 1 ? 1 : (M <= 4 ? 4 : 8);
}

void check_k(int64_t K) {
  if (K <= 0 || K % 16 != 0) {
    throw std::invalid_argument("bitnet_ext: K must be a positive multiple of 16");
  }
}

// y = x @ (s W).T for M <= kGemvMaxM: kernels/ternary_gemv.h.
KernelLaunch gemv_t(const TernaryMatmulArgs& a) {
  int bm = gemv_bm(a.M);
  KernelLaunch k;
  k.name = name("ternary_gemv_t", a.dtype, "bm" + std::to_string(bm));
  k.grid = {ceil_div(a.N, kGemvRowsPerGroup), ceil_div(a.M, bm), 1};
  k.group = {32 * kGemvSimdgroups, 1, 1};
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), out(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale)};
  return k;
}

// y = x @ s W for M <= kGemvMaxM: kernels/ternary_gemv.h. N is split across
// grid.z (partial sums in a temporary), then ternary_gemv_n_reduce adds them.
void gemv_n(LaunchPlan& p, const TernaryMatmulArgs& a) {
  int bm = a.M <= 1 ? 1 : 4;
  uint32_t splits = ceil_div(a.N, kGemvNRowsPerSplit);
  p.temporaries = {{"partial", size_t(splits) * size_t(a.M) * size_t(a.K) * sizeof(float), false}};
  KernelLaunch k;
  k.name = name("ternary_gemv_n", a.dtype, "bm" + std::to_string(bm));
  k.grid = {ceil_div(a.K / 16, 32), ceil_div(a.M, bm), splits};
  k.group = {32 * kGemvNSimdgroups, 1, 1};
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), tmp(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale),
                 ci("rows", 8, kGemvNRowsPerSplit)};
  // One float per (simdgroup, lane, code) of the partial sums.
  k.threadgroup_memory = {{0, size_t(kGemvNSimdgroups) * 32 * 16 * sizeof(float)}};
  push(p, k);

  KernelLaunch r;
  r.name = name("ternary_gemv_n_reduce", a.dtype);
  r.grid = {ceil_div(a.M * a.K, kElemThreads), 1, 1};
  r.group = {kElemThreads, 1, 1};
  r.buffers = {tmp(0, 0), out(0, 1)};
  r.constants = {ci("count", 2, a.M * a.K), ci("splits", 3, splits)};
  push(p, r);
}

enum class GemmMode { T, N, I8 };

// The GEMM's tile (see kGemmMinThreadgroups) for an M x cols output, or the
// one a test or measurement forces (force_bm, force_bn > 0).
template <size_t n>
GemmTile gemm_tile(const GemmTile (&tiles)[n], const char* op, int64_t M, int64_t cols, int force_bm, int force_bn) {
  if (force_bm > 0 || force_bn > 0) {
    for (const GemmTile& t : tiles) {
      if (t.bm == force_bm && t.bn == force_bn) {
        return t;
      }
    }
    throw std::invalid_argument(std::string("bitnet_ext: ") + op + " has no " + std::to_string(force_bm) + " x " +
                                std::to_string(force_bn) + " tile");
  }
  for (const GemmTile& t : tiles) {
    if (int64_t(ceil_div(M, t.bm)) * int64_t(ceil_div(cols, t.bn)) >= kGemmMinThreadgroups) {
      return t;
    }
  }
  return tiles[n - 1];
}

// Tiled simdgroup_matrix GEMM (kernels/ternary_gemm.h): the kernel name, grid,
// threads and the two padded threadgroup tiles. A: BM rows of x in the
// activation type (int8 staged as half); B: the decoded weights, BN rows of
// kGemmBK halves (T, I8) or kGemmBK rows of BN floats (N, s(n) W).
KernelLaunch gemm_launch(GemmMode mode, Dtype dtype, int64_t M, int64_t cols, int force_bm, int force_bn) {
  KernelLaunch k;
  const char* op = mode == GemmMode::T ? "ternary_gemm_t" : (mode == GemmMode::N ? "ternary_gemm_n" : "bitlinear_gemm");
  const GemmTile t = mode == GemmMode::I8 ? gemm_tile(kGemmTilesInt8, op, M, cols, force_bm, force_bn)
                                          : gemm_tile(kGemmTilesFloat, op, M, cols, force_bm, force_bn);
  k.name = name(op, dtype, "bm" + std::to_string(t.bm) + "_bn" + std::to_string(t.bn));
  k.grid = {ceil_div(cols, t.bn), ceil_div(M, t.bm), 1};
  k.group = {kGemmThreads, 1, 1};
  const size_t a_elem = mode == GemmMode::I8 ? 2 : dtype_size(dtype);
  const size_t a_bytes = size_t(t.bm) * (kGemmBK * a_elem + kGemmPadBytes);
  const size_t b_bytes = mode == GemmMode::N ? size_t(kGemmBK) * (t.bn * sizeof(float) + kGemmPadBytes)
                                             : size_t(t.bn) * (kGemmBK * 2 + kGemmPadBytes);
  k.threadgroup_memory = {{0, a_bytes}, {1, b_bytes}};
  return k;
}

KernelLaunch gemm(const TernaryMatmulArgs& a) {
  KernelLaunch k = gemm_launch(a.transpose ? GemmMode::T : GemmMode::N, a.dtype, a.M, a.transpose ? a.N : a.K,
                               a.gemm_bm, a.gemm_bn);
  k.buffers = {in(0, 0), in(1, 1), in(2, 2), out(0, 3)};
  k.constants = {ci("M", 4, a.M), ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale)};
  return k;
}

KernelLaunch absmax_kernel(int64_t M, int64_t K, Dtype dtype, float eps, BufferBinding x,
                           BufferBinding xq, BufferBinding xscale) {
  KernelLaunch k;
  k.name = name("absmax_quantize", dtype);
  k.grid = {ceil_div(M, 1), 1, 1};
  k.group = {kRowThreads, 1, 1};
  x.slot = 0;
  xq.slot = 1;
  xscale.slot = 2;
  k.buffers = {x, xq, xscale};
  k.constants = {ci("K", 3, K), cf("eps", 4, eps)};
  k.threadgroup_memory = {{0, 32 * sizeof(float)}};
  return k;
}

} // namespace

void check_threadgroup_memory(const KernelLaunch& k) {
  size_t total = 0;
  for (const auto& t : k.threadgroup_memory) {
    total += t.bytes;
  }
  if (total > kMaxThreadgroupMemory) {
    throw std::invalid_argument("bitnet_ext: launch plan of " + k.name + " asks for " + std::to_string(total) +
                                " bytes of threadgroup memory; Apple GPUs allow " +
                                std::to_string(kMaxThreadgroupMemory));
  }
}

LaunchPlan plan_ternary_matmul(const TernaryMatmulArgs& a) {
  check_k(a.K);
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p; // nothing to compute
  }
  if (a.M <= kGemvMaxM) {
    if (a.transpose) {
      push(p, gemv_t(a));
    } else {
      gemv_n(p, a);
    }
  } else {
    push(p, gemm(a));
  }
  return p;
}

LaunchPlan plan_absmax_quantize(int64_t M, int64_t K, Dtype dtype, float eps) {
  LaunchPlan p;
  if (M <= 0 || K <= 0) {
    return p;
  }
  push(p, absmax_kernel(M, K, dtype, eps, in(0, 0), out(0, 0), out(1, 0)));
  return p;
}

LaunchPlan plan_bitlinear(const BitLinearArgs& a) {
  check_k(a.K);
  LaunchPlan p;
  if (a.M <= 0 || a.N <= 0) {
    return p;
  }
  if (a.M == 1 && a.K <= kFusedMaxK && a.allow_fused) {
    KernelLaunch k;
    k.name = name("bitlinear_fused", a.dtype);
    k.grid = {ceil_div(a.N, kGemvRowsPerGroup), 1, 1};
    k.group = {32 * kGemvSimdgroups, 1, 1};
    // Without a bias, slot 3 gets the scale buffer again (never read).
    k.buffers = {in(0, 0), in(1, 1), in(2, 2), in(a.has_bias ? 3 : 2, 3), out(0, 4)};
    k.constants = {ci("N", 5, a.N), ci("K", 6, a.K), ci("per_row", 7, a.per_row_scale),
                   ci("has_bias", 8, a.has_bias), cf("eps", 9, a.eps)};
    k.threadgroup_memory = {{0, size_t((a.K + 15) / 16 * 16)}, {1, 16 * sizeof(float)}};
    push(p, k);
    return p;
  }
  p.temporaries = {
      {"xq", size_t(a.M) * size_t(a.K), false},
      {"xscale", size_t(a.M) * sizeof(float), false},
  };
  push(p, absmax_kernel(a.M, a.K, a.dtype, a.eps, in(0, 0), tmp(0, 0), tmp(1, 0)));

  KernelLaunch k;
  bool use_gemm = a.M > kGemvMaxM && a.K <= kI8GemmMaxK;
  if (use_gemm) {
    k = gemm_launch(GemmMode::I8, a.dtype, a.M, a.N, a.gemm_bm, a.gemm_bn);
  } else {
    int bm = gemv_bm(a.M);
    k.name = name("bitlinear_gemv", a.dtype, "bm" + std::to_string(bm));
    k.grid = {ceil_div(a.N, kGemvRowsPerGroup), ceil_div(a.M, bm), 1};
    k.group = {32 * kGemvSimdgroups, 1, 1};
  }
  // Without a bias, slot 4 gets the scale buffer again (never read).
  k.buffers = {tmp(0, 0), tmp(1, 1), in(1, 2), in(2, 3), in(a.has_bias ? 3 : 2, 4), out(0, 5)};
  k.constants = {ci("M", 6, a.M), ci("N", 7, a.N), ci("K", 8, a.K), ci("per_row", 9, a.per_row_scale),
                 ci("has_bias", 10, a.has_bias)};
  push(p, k);
  return p;
}

LaunchPlan plan_absmean_quantize(int64_t N, int64_t K, Dtype dtype, bool per_row, float eps) {
  check_k(K);
  LaunchPlan p;
  if (N <= 0) {
    return p;
  }
  KernelLaunch rows;
  rows.name = name("absmean_rows", dtype);
  rows.grid = {ceil_div(N, 1), 1, 1};
  rows.group = {kRowThreads, 1, 1};
  rows.constants = {ci("K", 4, K), ci("per_row", 5, per_row), cf("eps", 6, eps)};
  rows.threadgroup_memory = {{0, 2 * 32 * sizeof(float)}};
  if (per_row) {
    // Row sums, scale[n] and the packed row n in one kernel; slot 3 (the
    // partial sums of the per-tensor mode) gets the scale buffer, never read.
    rows.buffers = {in(0, 0), out(0, 1), out(1, 2), out(1, 3)};
    push(p, rows);
    return p;
  }
  p.temporaries = {{"row_sums", size_t(N) * 2 * sizeof(float), false}};
  rows.buffers = {in(0, 0), out(0, 1), out(1, 2), tmp(0, 3)};
  push(p, rows);

  KernelLaunch fin;
  fin.name = "absmean_finalize";
  fin.grid = {1, 1, 1};
  fin.group = {kRowThreads, 1, 1};
  fin.buffers = {tmp(0, 0), out(1, 1)};
  fin.constants = {ci("N", 2, N), ci("K", 3, K), cf("eps", 4, eps)};
  fin.threadgroup_memory = {{0, 2 * 32 * sizeof(float)}};
  push(p, fin);

  KernelLaunch pack;
  pack.name = name("absmean_pack", dtype);
  pack.grid = {ceil_div(N * (K / 16), kElemThreads), 1, 1};
  pack.group = {kElemThreads, 1, 1};
  pack.buffers = {in(0, 0), out(1, 1), out(0, 2)};
  pack.constants = {ci("N", 3, N), ci("K", 4, K), ci("per_row", 5, 0)};
  push(p, pack);
  return p;
}

LaunchPlan plan_pack(int64_t N, int64_t K) {
  check_k(K);
  LaunchPlan p;
  p.temporaries = {{"invalid", sizeof(uint32_t), true}};
  if (N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = "ternary_pack";
  k.grid = {ceil_div(N * (K / 16), kElemThreads), 1, 1};
  k.group = {kElemThreads, 1, 1};
  k.buffers = {in(0, 0), out(0, 1), tmp(0, 2)};
  k.constants = {ci("words", 3, N * (K / 16))};
  push(p, k);
  return p;
}

LaunchPlan plan_unpack(int64_t N, int64_t K) {
  check_k(K);
  LaunchPlan p;
  if (N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = "ternary_unpack";
  k.grid = {ceil_div(N * (K / 16), kElemThreads), 1, 1};
  k.group = {kElemThreads, 1, 1};
  k.buffers = {in(0, 0), out(0, 1)};
  k.constants = {ci("words", 2, N * (K / 16))};
  push(p, k);
  return p;
}

LaunchPlan plan_dequantize(int64_t N, int64_t K, Dtype dtype, bool per_row_scale) {
  check_k(K);
  LaunchPlan p;
  if (N <= 0) {
    return p;
  }
  KernelLaunch k;
  k.name = name("ternary_dequantize", dtype);
  k.grid = {ceil_div(N * (K / 16), kElemThreads), 1, 1};
  k.group = {kElemThreads, 1, 1};
  k.buffers = {in(0, 0), in(1, 1), out(0, 2)};
  k.constants = {ci("N", 3, N), ci("K", 4, K), ci("per_row", 5, per_row_scale)};
  push(p, k);
  return p;
}

std::vector<std::string> all_kernel_names() {
  std::vector<std::string> names;
  for (Dtype d : {Dtype::float32, Dtype::float16, Dtype::bfloat16}) {
    for (int bm : {1, 4, 8}) {
      names.push_back(name("ternary_gemv_t", d, "bm" + std::to_string(bm)));
      names.push_back(name("bitlinear_gemv", d, "bm" + std::to_string(bm)));
    }
    names.push_back(name("bitlinear_fused", d));
    for (int bm : {1, 4}) {
      names.push_back(name("ternary_gemv_n", d, "bm" + std::to_string(bm)));
    }
    names.push_back(name("ternary_gemv_n_reduce", d));
    for (const GemmTile& t : kGemmTilesFloat) {
      const std::string v = "bm" + std::to_string(t.bm) + "_bn" + std::to_string(t.bn);
      names.push_back(name("ternary_gemm_t", d, v));
      names.push_back(name("ternary_gemm_n", d, v));
    }
    for (const GemmTile& t : kGemmTilesInt8) {
      names.push_back(name("bitlinear_gemm", d, "bm" + std::to_string(t.bm) + "_bn" + std::to_string(t.bn)));
    }
    names.push_back(name("absmax_quantize", d));
    names.push_back(name("absmean_rows", d));
    names.push_back(name("absmean_pack", d));
    names.push_back(name("ternary_dequantize", d));
  }
  names.push_back("absmean_finalize");
  names.push_back("ternary_pack");
  names.push_back("ternary_unpack");
  return names;
}

std::string describe(const LaunchPlan& plan) {
  static const char* kinds[] = {"input", "output", "temp"};
  std::ostringstream os;
  for (size_t i = 0; i < plan.temporaries.size(); ++i) {
    const auto& t = plan.temporaries[i];
    os << "temp " << i << " " << t.name << ": " << t.bytes << " bytes" << (t.zero_init ? " (zeroed)" : "")
       << "\n";
  }
  for (const auto& k : plan.kernels) {
    os << k.name << " grid (" << k.grid.x << ", " << k.grid.y << ", " << k.grid.z << ") group ("
       << k.group.x << ", " << k.group.y << ", " << k.group.z << ")\n";
    for (const auto& b : k.buffers) {
      os << "  buffer(" << b.slot << ") = " << kinds[int(b.kind)] << " " << b.index << "\n";
    }
    for (const auto& c : k.constants) {
      os << "  buffer(" << c.slot << ") = " << c.name << " = ";
      if (c.type == Constant::Type::Int32) {
        os << c.i32;
      } else {
        os << c.f32;
      }
      os << "\n";
    }
    for (const auto& t : k.threadgroup_memory) {
      os << "  threadgroup(" << t.slot << ") = " << t.bytes << " bytes\n";
    }
  }
  return os.str();
}

} // namespace bitnet_ext::gpu
