// A small persistent thread pool that splits a range of output rows into
// static chunks. Internal to the CPU kernels (not part of kernels.h).
#pragma once

#include <cstdint>
#include <utility>

namespace bitnet_ext::cpu {

// The thread-count rule shared by set_num_threads (kernels.h), its Python
// binding and BITNET_EXT_NUM_THREADS: 1 <= n <= max_threads().
int max_threads();
// Returns n, or throws std::invalid_argument naming `source` and the limits.
int checked_thread_count(long long n, const char* source);

using RangeFn = void (*)(void* ctx, int64_t begin, int64_t end);

// Runs fn(ctx, b, e) over disjoint chunks covering [begin, end). Chunk
// boundaries are multiples of `grain` from `begin` (except the final end).
// The range is cut into a few static chunks per thread that the calling
// thread and the workers claim in order (the caller takes part, and runs
// whatever a busy or descheduled worker has not claimed). Returns when all
// chunks are done; if a chunk throws, the first exception is rethrown in the
// caller once every chunk has finished. Safe to call from any thread:
// a call made from inside a running parallel_for runs inline, and concurrent
// calls from different threads are serialized.
void parallel_for_raw(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* ctx);

template <class F>
inline void parallel_for(int64_t begin, int64_t end, int64_t grain, F&& fn) {
  using Fn = std::remove_reference_t<F>;
  parallel_for_raw(
      begin, end, grain,
      [](void* c, int64_t b, int64_t e) { (*static_cast<Fn*>(c))(b, e); },
      const_cast<void*>(static_cast<const void*>(&fn)));
}

} // namespace bitnet_ext::cpu
