#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
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

unsigned hardware_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : hc;
}

// The thread count from BITNET_EXT_NUM_THREADS (unset or empty: one per
// hardware thread). Validated by the same rule as set_num_threads.
int configured_threads() {
  const char* env = std::getenv("BITNET_EXT_NUM_THREADS");
  if (env == nullptr || *env == '\0') {
    return static_cast<int>(std::min<unsigned>(hardware_threads(), static_cast<unsigned>(max_threads())));
  }
  errno = 0;
  char* endp = nullptr;
  const long long v = std::strtoll(env, &endp, 10);
  if (endp == env || *endp != '\0' || errno == ERANGE) {
    throw std::invalid_argument(
        std::string("BITNET_EXT_NUM_THREADS='") + env + "' is not an integer; expected 1 to " +
        std::to_string(max_threads()) + " (or unset: one thread per hardware thread).");
  }
  return checked_thread_count(v, "BITNET_EXT_NUM_THREADS");
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

  // Starts every worker or none: if a thread cannot be created, those
  // already started are stopped and the error propagates.
  explicit Pool(int nthreads) {
    try {
      start(nthreads);
    } catch (...) {
      stop();
      throw;
    }
  }
  ~Pool() { stop(); }

  int size() const { return nthreads_; }

  // Stops the workers once no job is running. A caller that still holds
  // this pool afterwards runs every chunk itself (work() claims all ranges),
  // so a retired pool stays correct, only serial.
  void retire() {
    std::lock_guard<std::mutex> lk(submit_mutex_);
    stop();
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

  // How long an idle worker spins before it sleeps. A model's decode calls
  // the kernels with MLX ops of 10-100 us between them, and the process has
  // other busy threads (MLX's stream thread, Python building the next step's
  // graph): a worker that spins through those gaps takes a core from them.
  // 20000 pauses (0.5-1.3 ms) made 2 threads slower than 1 in mlx-lm's loop
  // on 2 cores; a sleeping worker joins a job ~5-20 us late, and the job's
  // caller runs the chunks the worker has not claimed yet.
  static constexpr auto kSpinTime = std::chrono::microseconds(20);

  void worker(int index, uint32_t seen) {
    t_in_parallel = true;
    while (true) {
      int spins = 0;
      uint32_t g;
      auto spin_end = std::chrono::steady_clock::time_point::min();
      while ((g = wake_.load(std::memory_order_acquire)) == seen) {
        if (++spins % 64 != 0) {
          BITNET_CPU_RELAX();
          continue;
        }
        const auto now = std::chrono::steady_clock::now();
        if (spin_end == std::chrono::steady_clock::time_point::min()) {
          spin_end = now + kSpinTime;
        } else if (now >= spin_end) {
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

std::mutex g_resize_mutex; // one resize at a time
std::atomic<Pool*> g_pool{nullptr};

// Pools are created on first use and never deleted: a kernel on another
// thread may still hold a pool that a resize has just replaced (it then runs
// its chunks itself), and no worker may be joined during static destruction,
// when other threads may still call kernels. A retired pool keeps only its
// bookkeeping (a few hundred bytes); its threads are gone.
Pool& pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p != nullptr) return *p;
  std::lock_guard<std::mutex> lk(g_resize_mutex);
  p = g_pool.load(std::memory_order_acquire);
  if (p == nullptr) {
    // configured_threads() was validated at import (bitnet_ext/__init__.py).
    // This runs inside a kernel task, where an exception would abort the
    // process: if the threads cannot be started, run on the caller alone.
    try {
      p = new Pool(configured_threads());
    } catch (const std::system_error&) {
      p = new Pool(1);
    }
    g_pool.store(p, std::memory_order_release);
  }
  return *p;
}

} // namespace

int max_threads() {
  // Beyond a few threads per hardware thread the kernels only get slower
  // (each job wakes every worker); 256 leaves room for large machines.
  return static_cast<int>(std::max<unsigned>(256, 4 * hardware_threads()));
}

int checked_thread_count(long long n, const char* source) {
  if (n < 1 || n > max_threads()) {
    throw std::invalid_argument(
        std::string(source) + ": the thread count must be 1 to " + std::to_string(max_threads()) +
        " (max(256, 4 x " + std::to_string(hardware_threads()) + " hardware threads)), got " +
        std::to_string(n) + ".");
  }
  return static_cast<int>(n);
}

int num_threads() {
  // Before the first kernel runs, report what the first pool will have
  // (validating BITNET_EXT_NUM_THREADS) without starting its threads.
  Pool* p = g_pool.load(std::memory_order_acquire);
  return p ? p->size() : configured_threads();
}

void set_num_threads(int n) {
  checked_thread_count(n, "set_num_threads");
  // Resizing from inside a parallel region would wait for ourselves.
  if (t_in_parallel) return;
  std::lock_guard<std::mutex> lk(g_resize_mutex);
  Pool* old = g_pool.load(std::memory_order_acquire);
  if (old != nullptr && old->size() == n) return;
  Pool* fresh = nullptr;
  try {
    fresh = new Pool(n); // every worker started, or nothing changed
  } catch (const std::system_error& e) {
    throw std::runtime_error(
        "set_num_threads: could not start " + std::to_string(n) + " threads (" + e.what() +
        "); still using " + std::to_string(old ? old->size() : configured_threads()) + ".");
  }
  g_pool.store(fresh, std::memory_order_release);
  if (old != nullptr) old->retire();
}

void parallel_for_raw(int64_t begin, int64_t end, int64_t grain, RangeFn fn, void* ctx) {
  pool().run(begin, end, grain, fn, ctx);
}

} // namespace bitnet_ext::cpu
