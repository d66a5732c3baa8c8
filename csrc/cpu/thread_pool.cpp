#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
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

// One job at a time (guarded by submit_mutex_). A job is cut into chunks (a
// few per thread); thread t (the caller is 0) owns the t-th contiguous range
// of chunks, which it claims in order, so the same thread gets the same rows
// call after call (its L2 keeps them). When its range is exhausted it claims
// what is left in the other ranges, so a worker that is late or descheduled
// (the machine is shared) only delays the chunk it has already started.
//
// Each range has a ticket (job id << 32 | next chunk). Claims are CAS
// operations that check the job id, and the caller closes every ticket
// before returning, so a late worker can never run a chunk of a finished
// job. Job fields are written before the tickets are published (release)
// and read after a ticket is loaded (acquire); a worker that reads fields of
// a newer job cannot claim with an older job id.
class Pool {
 public:
  static constexpr uint32_t kClosed = 0xffffffffu;
  static constexpr int kChunksPerThread = 4;

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
    std::lock_guard<std::mutex> lk(submit_mutex_);
    const int nt = nthreads_;
    const int64_t chunks = std::min<int64_t>(units, int64_t{nt} * kChunksPerThread);
    const uint64_t id = ++job_id_ & 0xffffffffu;
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    begin_.store(begin, std::memory_order_relaxed);
    end_.store(end, std::memory_order_relaxed);
    grain_.store(grain, std::memory_order_relaxed);
    units_.store(units, std::memory_order_relaxed);
    chunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    for (int r = 0; r < nt; ++r) {
      // Range r = chunks [r * chunks / nt, (r + 1) * chunks / nt).
      tickets_[r].v.store((id << 32) | static_cast<uint64_t>(r * chunks / nt), std::memory_order_release);
    }
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();

    t_in_parallel = true;
    work(id, 0);
    t_in_parallel = false;

    int spins = 0;
    while (true) {
      const int64_t d = done_.load(std::memory_order_acquire);
      if (d >= chunks) break;
      if (++spins < 4000) {
        BITNET_CPU_RELAX();
      } else {
        std::this_thread::yield();
      }
    }
    for (int r = 0; r < nt; ++r) tickets_[r].v.store((id << 32) | kClosed, std::memory_order_release);
    if (error_) {
      std::exception_ptr e = error_;
      error_ = nullptr;
      std::rethrow_exception(e);
    }
  }

 private:
  // Claims and runs chunks of job `id`: first those of range `own`, then
  // whatever is left in the other ranges.
  void work(uint64_t id, int own) {
    const int nt = nthreads_;
    for (int k = 0; k < nt; ++k) {
      const int r = (own + k) % nt;
      std::atomic<uint64_t>& ticket = tickets_[r].v;
      while (true) {
        uint64_t t = ticket.load(std::memory_order_acquire);
        if ((t >> 32) != id) return; // closed or a newer job: nothing of ours is left
        const uint32_t c = static_cast<uint32_t>(t);
        const int64_t chunks = chunks_.load(std::memory_order_relaxed);
        const int64_t range_end = (r + 1) * chunks / nt;
        if (c == kClosed || c >= range_end) break;
        if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
        const int64_t units = units_.load(std::memory_order_relaxed);
        const int64_t b0 = begin_.load(std::memory_order_relaxed);
        const int64_t e0 = end_.load(std::memory_order_relaxed);
        const int64_t grain = grain_.load(std::memory_order_relaxed);
        const int64_t u0 = c * units / chunks;
        const int64_t u1 = (c + 1) * units / chunks;
        const int64_t b = b0 + u0 * grain;
        const int64_t e = std::min(e0, b0 + u1 * grain);
        if (b < e) {
          try {
            fn_.load(std::memory_order_relaxed)(ctx_.load(std::memory_order_relaxed), b, e);
          } catch (...) {
            // Kept for the caller (a worker must never terminate the process).
            std::lock_guard<std::mutex> lk(error_mutex_);
            if (!error_) error_ = std::current_exception();
          }
        }
        done_.fetch_add(1, std::memory_order_acq_rel);
      }
    }
  }

  void worker(int index, uint32_t seen) {
    t_in_parallel = true;
    while (true) {
      int spins = 0;
      uint32_t g;
      while ((g = wake_.load(std::memory_order_acquire)) == seen) {
        if (++spins < 20000) {
          BITNET_CPU_RELAX();
        } else {
          wake_.wait(seen, std::memory_order_acquire);
        }
      }
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      work(tickets_[index].v.load(std::memory_order_acquire) >> 32, index);
    }
  }

  void start(int n) {
    nthreads_ = std::max(1, n);
    stop_.store(false);
    tickets_ = std::make_unique<Ticket[]>(static_cast<size_t>(nthreads_));
    for (int r = 0; r < nthreads_; ++r) tickets_[r].v.store(kClosed);
    const uint32_t g = wake_.load();
    for (int i = 1; i < nthreads_; ++i) {
      workers_.emplace_back([this, i, g] { worker(i, g); });
    }
  }

  void stop() {
    stop_.store(true, std::memory_order_release);
    wake_.fetch_add(1, std::memory_order_release);
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  struct alignas(64) Ticket {
    std::atomic<uint64_t> v{0};
  };

  std::mutex submit_mutex_;
  std::mutex error_mutex_;
  std::exception_ptr error_; // first exception thrown by a chunk of the current job
  std::vector<std::thread> workers_;
  int nthreads_ = 1;
  uint64_t job_id_ = 0;
  std::unique_ptr<Ticket[]> tickets_;
  std::atomic<uint32_t> wake_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<bool> stop_{false};
  std::atomic<RangeFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> begin_{0}, end_{0}, grain_{1}, units_{0}, chunks_{0};
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
