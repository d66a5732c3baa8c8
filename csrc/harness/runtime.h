// CPU shader harness: runtime interface shared by the MSL shim (shim.h), the
// generated kernel registrations and the executor (executor.cpp).
//
// Threads of one threadgroup run as stackful fibers on one OS thread; a
// scheduler (fiber.cpp) switches fibers only at synchronization points:
// threadgroup_barrier, simdgroup_barrier and every simdgroup collective
// (simd_sum, simd_shuffle*, simdgroup_multiply_accumulate, ...). A collective
// completes when all live lanes of the simdgroup have reached it, a barrier
// when all live threads of the threadgroup have.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace bnh {

struct U3 {
  uint32_t x = 0, y = 0, z = 0;
};

// Built-in indices of one thread ([[thread_position_in_grid]] etc.).
struct ThreadIds {
  U3 thread_position_in_grid;
  U3 thread_position_in_threadgroup;
  U3 threadgroup_position_in_grid;
  U3 threads_per_threadgroup;
  U3 threadgroups_per_grid;
  U3 threads_per_grid;
  uint32_t thread_index_in_threadgroup = 0;
  uint32_t thread_index_in_simdgroup = 0;
  uint32_t simdgroup_index_in_threadgroup = 0;
  uint32_t threads_per_simdgroup = 32;
  uint32_t simdgroups_per_threadgroup = 0;
};

// What a generated kernel wrapper needs to call the [[kernel]] function.
struct Invocation {
  void* const* buffers;   // [[buffer(i)]] -> buffers[i]
  size_t num_buffers;
  void* const* tg_memory; // [[threadgroup(i)]] -> tg_memory[i]
  size_t num_tg_memory;
  const ThreadIds* ids;
};

using KernelFn = void (*)(const Invocation&);

struct KernelInfo {
  std::string name; // [[host_name]]
  std::string file; // the .metal source that instantiated it
  KernelFn fn;
};

void register_kernel(const char* name, const char* file, KernelFn fn);
const std::vector<KernelInfo>& kernels();
const KernelInfo* find_kernel(const std::string& name);

struct KernelRegistration {
  KernelRegistration(const char* name, const char* file, KernelFn fn) {
    register_kernel(name, file, fn);
  }
};

// Raised (inside a fiber) for GPU-semantics violations: divergent
// collectives, deadlocks, bad bindings. Reported by launch() as
// std::runtime_error with the kernel name.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------
// Fiber-side API (called from shim.h while a kernel runs).

// A simdgroup collective: each live lane deposits `in` (and `arg`, e.g. a
// lane index); when all live lanes have arrived, compute() fills every
// lane's `out` from all inputs. Lanes whose bit is clear in `present` have
// exited. compute() must be a pure function of its inputs (deterministic).
struct SimdOp {
  void (*compute)(const void* const* in, void* const* out, const uint32_t* arg, uint32_t present);
  const char* name;
};
void simd_collective(const SimdOp* op, const void* in, void* out, uint32_t arg);
// orders_threadgroup: the barrier's mem_flags include mem_threadgroup. A
// barrier without it orders no threadgroup memory: if threadgroup memory was
// written since the last barrier that did, the launch fails (a conservative
// check: MSL leaves such a write's visibility to other threads undefined).
// A barrier reached after some thread of the threadgroup returned fails too.
void threadgroup_barrier_wait(bool orders_threadgroup);
void simdgroup_barrier_wait();
const ThreadIds& current_ids();
// A threadgroup array declared in a kernel body (static thread_local in the
// rewritten source): filled with garbage once per threadgroup.
void threadgroup_local(void* p, size_t bytes);
[[noreturn]] void kernel_fail(const std::string& message);

// ---------------------------------------------------------------------------
// Launching.

enum class Order : int { Forward = 0, Reverse = 1, Shuffled = 2 };
Order parse_order(const std::string& s); // "forward" | "reverse" | "shuffled"

struct LaunchOptions {
  Order order = Order::Forward;
  uint64_t seed = 0; // for Order::Shuffled
  int threads = 0;   // OS threads running threadgroups; 0: BITNET_HARNESS_THREADS or 2
};

// Runs kernel `name` over grid (threadgroups) x group (threads): every
// threadgroup's threads as fibers in the chosen order; threadgroups in the
// same order (forward, reverse or a shuffled permutation).
void launch(
    const std::string& name,
    U3 grid,
    U3 group,
    const std::vector<void*>& buffers,
    const std::vector<size_t>& tg_memory_bytes,
    const LaunchOptions& options);

// Apple GPUs give a threadgroup at most 32 KiB of threadgroup memory; launch()
// rejects more (the harness itself could run it).
constexpr size_t kMaxThreadgroupMemory = 32 * 1024;

// Executed kernel names (in-process record; also appended, one per line, to
// the file named by BITNET_HARNESS_RECORD when that variable is set).
std::vector<std::string> executed_kernels();
void reset_executed_kernels();

} // namespace bnh
