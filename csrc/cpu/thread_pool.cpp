#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define BITNET_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define BITNET_CPU_RELAX() asm volatile("yield" ::: "memory")
#else
#define BITNET_CPU_RELAX() ((void)0)
#endif

#include "kernels.h"

namespace bitnet_ext::cpu {
namespace {

int default_threads() {
  if (const char* env = std::getenv("BITNET_EXT_NUM_THREADS")) {
    char* endp = nullptr;
    long v = std::strtol(env, &endp, 10);
    if (endp != env && *endp == '\0' && v >= 1) {
      return static_cast<int>(std::min<long>(v, 1024));
    }
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

thread_local bool t_in_parallel = false;

// One job at a time (guarded by Pool::submit_mutex_). Workers wait on the
// generation counter (std::atomic::wait, a futex on Linux) after a short spin.
class Pool {
 public:
  explicit Pool(int nthreads) { start(nthreads); }
  ~Pool() { stop(); }

  int size() const { return nthreads_; }

  void resize(int n) {
    std::lock_guard<std::mutex> lk(submit_mutex_);
    if (n == nthreads_) return;
    stop();
    start(n);
  }

  void run(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* ctx) {
    if (end <= begin) return;
    if (grain < 1) grain = 1;
    const int64_t units = (end - begin + grain - 1) / grain;
    if (t_in_parallel || nthreads_ <= 1 || units <= 1) {
      fn(ctx, begin, end);
      return;
    }
    std::unique_lock<std::mutex> lk(submit_mutex_);
    const int nt = nthreads_;
    const int64_t chunks = std::min<int64_t>(units, nt);
    if (chunks <= 1) {
      lk.unlock();
      fn(ctx, begin, end);
      return;
    }
    job_fn_ = fn;
    job_ctx_ = ctx;
    job_begin_ = begin;
    job_end_ = end;
    job_grain_ = grain;
    job_units_ = units;
    job_chunks_ = chunks;
    pending_.store(static_cast<int>(chunks - 1), std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();

    t_in_parallel = true;
    run_chunk(0);
    t_in_parallel = false;

    // Wait for the workers' chunks.
    int spins = 0;
    while (true) {
      int p = pending_.load(std::memory_order_acquire);
      if (p == 0) break;
      if (++spins < 20000) {
        BITNET_CPU_RELAX();
      } else {
        pending_.wait(p, std::memory_order_acquire);
      }
    }
  }

 private:
  void run_chunk(int64_t c) {
    // Chunk c covers units [c*units/chunks, (c+1)*units/chunks).
    const int64_t u0 = c * job_units_ / job_chunks_;
    const int64_t u1 = (c + 1) * job_units_ / job_chunks_;
    const int64_t b = job_begin_ + u0 * job_grain_;
    const int64_t e = std::min(job_end_, job_begin_ + u1 * job_grain_);
    if (b < e) job_fn_(job_ctx_, b, e);
  }

  void worker(int index, uint64_t seen) {
    t_in_parallel = true;
    while (true) {
      int spins = 0;
      uint64_t g;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
        if (++spins < 20000) {
          BITNET_CPU_RELAX();
        } else {
          generation_.wait(seen, std::memory_order_acquire);
        }
      }
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      if (index < job_chunks_) {
        run_chunk(index);
        if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
          pending_.notify_all();
        }
      }
    }
  }

  void start(int n) {
    nthreads_ = std::max(1, n);
    stop_.store(false);
    const uint64_t g = generation_.load();
    for (int i = 1; i < nthreads_; ++i) {
      workers_.emplace_back([this, i, g] { worker(i, g); });
    }
  }

  void stop() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_release);
    generation_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::mutex submit_mutex_;
  std::vector<std::thread> workers_;
  int nthreads_ = 1;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  RangeFn job_fn_ = nullptr;
  void* job_ctx_ = nullptr;
  int64_t job_begin_ = 0, job_end_ = 0, job_grain_ = 1, job_units_ = 0, job_chunks_ = 0;
};

std::mutex g_pool_mutex;
std::atomic<int> g_requested{0}; // 0: default

Pool& pool() {
  // Created on first use; intentionally leaked so that no worker is joined
  // during static destruction (when other threads may still call kernels).
  static Pool* p = new Pool(g_requested.load() > 0 ? g_requested.load() : default_threads());
  return *p;
}

} // namespace

int num_threads() {
  return pool().size();
}

void set_num_threads(int n) {
  if (n < 1) n = default_threads();
  // Resizing from inside a parallel region would wait for ourselves.
  if (t_in_parallel) return;
  std::lock_guard<std::mutex> lk(g_pool_mutex);
  g_requested.store(n);
  pool().resize(n);
}

void parallel_for_raw(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* ctx) {
  pool().run(begin, end, grain, fn, ctx);
}

} // namespace bitnet_ext::cpu
