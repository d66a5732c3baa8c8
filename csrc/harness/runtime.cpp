// CPU shader harness runtime: kernel registry, fibers, the scheduler that
// gives threadgroup_barrier / simdgroup collectives their GPU semantics, and
// launch() over a grid of threadgroups.
#include "runtime.h"

#include "kernel_record.h"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#if defined(__SANITIZE_ADDRESS__)
#define BNH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BNH_ASAN 1
#endif
#endif
#ifdef BNH_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

// ---------------------------------------------------------------------------
// Context switch: bnh_switch(&save_sp, new_sp) saves the callee-saved
// registers on the current stack, stores the stack pointer in *save_sp,
// switches to new_sp and restores the registers saved there. A new fiber's
// stack is prepared so that the restore "returns" into bnh_entry, which calls
// fn(arg) (fn in a callee-saved register) and never returns.
#if defined(__x86_64__) && defined(__linux__)
#define BNH_ASM_SWITCH 1
asm(R"(
  .text
  .globl bnh_switch
  .type bnh_switch,@function
bnh_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size bnh_switch,.-bnh_switch
  .globl bnh_entry
  .type bnh_entry,@function
bnh_entry:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size bnh_entry,.-bnh_entry
)");
#elif defined(__aarch64__) && defined(__linux__)
#define BNH_ASM_SWITCH 1
asm(R"(
  .text
  .globl bnh_switch
  .type bnh_switch,%function
bnh_switch:
  sub sp, sp, #176
  stp x19, x20, [sp, #0]
  stp x21, x22, [sp, #16]
  stp x23, x24, [sp, #32]
  stp x25, x26, [sp, #48]
  stp x27, x28, [sp, #64]
  stp x29, x30, [sp, #80]
  stp d8, d9, [sp, #96]
  stp d10, d11, [sp, #112]
  stp d12, d13, [sp, #128]
  stp d14, d15, [sp, #144]
  mov x9, sp
  str x9, [x0]
  mov sp, x1
  ldp x19, x20, [sp, #0]
  ldp x21, x22, [sp, #16]
  ldp x23, x24, [sp, #32]
  ldp x25, x26, [sp, #48]
  ldp x27, x28, [sp, #64]
  ldp x29, x30, [sp, #80]
  ldp d8, d9, [sp, #96]
  ldp d10, d11, [sp, #112]
  ldp d12, d13, [sp, #128]
  ldp d14, d15, [sp, #144]
  add sp, sp, #176
  ret
  .size bnh_switch,.-bnh_switch
  .globl bnh_entry
  .type bnh_entry,%function
bnh_entry:
  mov x0, x19
  blr x20
  brk #0
  .size bnh_entry,.-bnh_entry
)");
#else
#include <ucontext.h>
#endif

#ifdef BNH_ASM_SWITCH
extern "C" void bnh_switch(void** save_sp, void* new_sp);
extern "C" void bnh_entry();
#endif

namespace bnh {

// ---------------------------------------------------------------------------
// Registry

namespace {

ExecutedRecord g_executed;

void record_executed(const std::string& name) {
  g_executed.add(name);
}

} // namespace

void register_kernel(const char* name, const char* file, KernelFn fn) {
  try {
    KernelRegistry<KernelInfo>::add({name, file, fn});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bnh: %s\n", e.what());
    std::abort();
  }
}

const std::vector<KernelInfo>& kernels() {
  return KernelRegistry<KernelInfo>::all();
}

const KernelInfo* find_kernel(const std::string& name) {
  return KernelRegistry<KernelInfo>::find(name);
}

std::vector<std::string> executed_kernels() {
  return g_executed.list();
}

void reset_executed_kernels() {
  g_executed.reset();
}

Order parse_order(const std::string& s) {
  if (s == "forward") {
    return Order::Forward;
  }
  if (s == "reverse") {
    return Order::Reverse;
  }
  if (s == "shuffled") {
    return Order::Shuffled;
  }
  throw std::invalid_argument("bnh: fiber order must be forward, reverse or shuffled, got '" + s + "'");
}

// ---------------------------------------------------------------------------
// Fibers and the threadgroup scheduler

namespace {

enum class State : uint8_t { Ready, WaitSimd, WaitBarrier, Done };

struct Stack {
  char* base = nullptr; // mapping start (guard page first)
  size_t map_size = 0;
  char* lo = nullptr; // usable bottom
  size_t size = 0;
};

struct Fiber {
  void* sp = nullptr;
  Stack* stack = nullptr;
  ThreadIds ids;
  Invocation inv;
  State state = State::Ready;
#ifndef BNH_ASM_SWITCH
  ucontext_t ctx;
#endif
#ifdef BNH_ASAN
  void* fake_stack = nullptr;
#endif
};

struct SimdGroup {
  uint32_t live = 0;    // lanes that have not exited
  uint32_t arrived = 0; // lanes waiting in the current collective
  const SimdOp* op = nullptr;
  const void* in[32];
  void* out[32];
  uint32_t arg[32];
};

struct Group {
  KernelFn fn = nullptr;
  const char* kernel = "";
  std::vector<Fiber> fibers;
  std::vector<SimdGroup> simd;
  int live = 0;
  int barrier_arrived = 0;
  int exited = 0;                 // threads that returned
  bool barrier_orders_tg = true;  // every arrival at the current barrier had mem_threadgroup
  // [[threadgroup(i)]] memory and its contents at the last barrier that
  // ordered threadgroup memory (or the threadgroup's start).
  std::vector<std::pair<unsigned char*, size_t>> tg_memory;
  std::vector<unsigned char> tg_snapshot;
  void* sched_sp = nullptr;
#ifndef BNH_ASM_SWITCH
  ucontext_t sched_ctx;
#endif
#ifdef BNH_ASAN
  void* sched_fake_stack = nullptr;
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
#endif
  bool failed = false;
  std::string error;
  // Scheduling: forward/reverse run the Ready fiber of lowest rank (so the
  // first threads in the order run ahead as far as their sync points allow);
  // shuffled runs a random Ready fiber.
  Order order = Order::Forward;
  std::vector<uint32_t> rank_of;     // fiber -> rank
  std::vector<uint32_t> fiber_at;    // rank -> fiber
  std::vector<uint8_t> ready_rank;   // rank -> ready
  uint32_t lowest = 0;               // no ready rank below this
  std::vector<uint32_t> ready_list;  // shuffled order
  std::mt19937_64 rng;
};

thread_local Group* t_group = nullptr;
thread_local uint64_t t_epoch = 0; // threadgroups run so far on this OS thread
thread_local std::map<void*, uint64_t> t_local_epochs;

void set_ready(Group* g, uint32_t i) {
  g->fibers[i].state = State::Ready;
  if (g->order == Order::Shuffled) {
    g->ready_list.push_back(i);
  } else {
    uint32_t r = g->rank_of[i];
    g->ready_rank[r] = 1;
    g->lowest = std::min(g->lowest, r);
  }
}

// The next fiber to run, or -1 if none is ready.
int64_t pick(Group* g) {
  if (g->order == Order::Shuffled) {
    if (g->ready_list.empty()) {
      return -1;
    }
    size_t j = size_t(g->rng() % g->ready_list.size());
    uint32_t i = g->ready_list[j];
    g->ready_list[j] = g->ready_list.back();
    g->ready_list.pop_back();
    return i;
  }
  const uint32_t n = uint32_t(g->fiber_at.size());
  while (g->lowest < n && !g->ready_rank[g->lowest]) {
    ++g->lowest;
  }
  if (g->lowest == n) {
    return -1;
  }
  g->ready_rank[g->lowest] = 0;
  return g->fiber_at[g->lowest];
}
thread_local Fiber* t_fiber = nullptr;

size_t stack_bytes() {
  static size_t bytes = [] {
    size_t kb = 0;
    if (const char* e = std::getenv("BITNET_HARNESS_STACK_KB"); e && *e) {
      kb = std::strtoul(e, nullptr, 10);
    }
    if (kb == 0) {
#ifdef BNH_ASAN
      kb = 512;
#else
      kb = 64;
#endif
    }
    return kb * 1024;
  }();
  return bytes;
}

// Per OS thread: stacks reused across threadgroups and launches.
struct StackPool {
  std::vector<std::unique_ptr<Stack>> stacks;
  ~StackPool() {
    for (auto& s : stacks) {
      munmap(s->base, s->map_size);
    }
  }
  Stack* get(size_t i) {
    while (stacks.size() <= i) {
      size_t page = size_t(sysconf(_SC_PAGESIZE));
      size_t size = (stack_bytes() + page - 1) / page * page;
      auto s = std::make_unique<Stack>();
      s->map_size = size + page;
      void* p = mmap(nullptr, s->map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) {
        throw std::runtime_error("bnh: cannot allocate a fiber stack");
      }
      s->base = static_cast<char*>(p);
      mprotect(s->base, page, PROT_NONE); // overflow guard
      s->lo = s->base + page;
      s->size = size;
      stacks.push_back(std::move(s));
    }
    return stacks[i].get();
  }
};

// Stack pools outlive the worker threads of one launch: a worker borrows one
// for the launch and gives it back (mmap/munmap of hundreds of stacks per
// launch would dominate small launches).
std::mutex g_pools_mutex;
std::vector<std::unique_ptr<StackPool>> g_pools;

std::unique_ptr<StackPool> borrow_pool() {
  std::lock_guard<std::mutex> lock(g_pools_mutex);
  if (g_pools.empty()) {
    return std::make_unique<StackPool>();
  }
  auto p = std::move(g_pools.back());
  g_pools.pop_back();
  return p;
}

void return_pool(std::unique_ptr<StackPool> p) {
  std::lock_guard<std::mutex> lock(g_pools_mutex);
  g_pools.push_back(std::move(p));
}

thread_local StackPool* t_stacks = nullptr;

void switch_to_scheduler(Fiber* f, bool exiting) {
  Group* g = t_group;
#ifdef BNH_ASAN
  __sanitizer_start_switch_fiber(exiting ? nullptr : &f->fake_stack, g->sched_bottom, g->sched_size);
#else
  (void)exiting;
#endif
#ifdef BNH_ASM_SWITCH
  bnh_switch(&f->sp, g->sched_sp);
#else
  swapcontext(&f->ctx, &g->sched_ctx);
#endif
#ifdef BNH_ASAN
  __sanitizer_finish_switch_fiber(f->fake_stack, &g->sched_bottom, &g->sched_size);
#endif
}

void try_complete_simd(Group* g, SimdGroup& s, uint32_t sg) {
  if (s.arrived == 0 || s.arrived != s.live) {
    return;
  }
  if (s.op->compute) {
    s.op->compute(s.in, s.out, s.arg, s.arrived);
  }
  for (uint32_t lane = 0; lane < 32; ++lane) {
    if (s.arrived & (1u << lane)) {
      set_ready(g, sg * 32 + lane);
    }
  }
  s.arrived = 0;
  s.op = nullptr;
}

void snapshot_tg_memory(Group* g) {
  g->tg_snapshot.clear();
  for (const auto& [p, n] : g->tg_memory) {
    g->tg_snapshot.insert(g->tg_snapshot.end(), p, p + n);
  }
}

// Offset of the first threadgroup-memory byte changed since the snapshot, or -1.
int64_t tg_memory_changed(const Group* g) {
  size_t off = 0;
  for (const auto& [p, n] : g->tg_memory) {
    for (size_t i = 0; i < n; ++i) {
      if (p[i] != g->tg_snapshot[off + i]) {
        return int64_t(off + i);
      }
    }
    off += n;
  }
  return -1;
}

void fail_group(Group* g, const std::string& message) {
  if (!g->failed) {
    g->failed = true;
    g->error = message;
  }
}

void try_complete_barrier(Group* g) {
  if (g->barrier_arrived == 0 || g->barrier_arrived != g->live) {
    return;
  }
  if (g->exited > 0) {
    fail_group(g, "threadgroup_barrier reached after " + std::to_string(g->exited) +
                      " thread(s) of the threadgroup returned (undefined on a GPU: every thread must reach it)");
    return;
  }
  if (g->barrier_orders_tg) {
    snapshot_tg_memory(g);
  } else if (int64_t at = tg_memory_changed(g); at >= 0) {
    fail_group(g, "threadgroup memory (byte " + std::to_string(at) +
                      ") was written before a threadgroup_barrier without mem_flags::mem_threadgroup, "
                      "which does not make it visible to other threads");
    return;
  }
  g->barrier_orders_tg = true;
  for (uint32_t i = 0; i < g->fibers.size(); ++i) {
    if (g->fibers[i].state == State::WaitBarrier) {
      set_ready(g, i);
    }
  }
  g->barrier_arrived = 0;
}

void fiber_exit(Group* g, Fiber* f) {
  f->state = State::Done;
  --g->live;
  ++g->exited;
  uint32_t sg = f->ids.simdgroup_index_in_threadgroup;
  auto& s = g->simd[sg];
  s.live &= ~(1u << f->ids.thread_index_in_simdgroup);
  try_complete_simd(g, s, sg);
  try_complete_barrier(g);
}

void fiber_main(void* arg) {
  Fiber* f = static_cast<Fiber*>(arg);
  Group* g = t_group;
#ifdef BNH_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &g->sched_bottom, &g->sched_size);
#endif
  try {
    g->fn(f->inv);
  } catch (const std::exception& e) {
    if (!g->failed) {
      g->failed = true;
      std::ostringstream os;
      os << e.what() << " (thread " << f->ids.thread_index_in_threadgroup << " of threadgroup ("
         << f->ids.threadgroup_position_in_grid.x << ", " << f->ids.threadgroup_position_in_grid.y << ", "
         << f->ids.threadgroup_position_in_grid.z << "))";
      g->error = os.str();
    }
  }
  fiber_exit(g, f);
  switch_to_scheduler(f, true);
  std::abort(); // never resumed
}

#ifndef BNH_ASM_SWITCH
void fiber_trampoline(unsigned lo, unsigned hi) {
  fiber_main(reinterpret_cast<void*>((uintptr_t(hi) << 32) | uintptr_t(lo)));
}
#endif

void prepare_fiber(Fiber& f) {
  Stack* st = f.stack;
#ifdef BNH_ASM_SWITCH
  uintptr_t top = (uintptr_t(st->lo) + st->size) & ~uintptr_t(15);
#if defined(__x86_64__)
  // Popped by bnh_switch: r15 r14 r13 r12 rbx rbp, then `ret` to bnh_entry,
  // which finds rsp 16-byte aligned before its call (SysV ABI).
  auto* sp = reinterpret_cast<void**>(top - 72);
  sp[0] = nullptr;                                     // r15
  sp[1] = nullptr;                                     // r14
  sp[2] = reinterpret_cast<void*>(&fiber_main);        // r13: fn
  sp[3] = &f;                                          // r12: arg
  sp[4] = nullptr;                                     // rbx
  sp[5] = nullptr;                                     // rbp
  sp[6] = reinterpret_cast<void*>(&bnh_entry);         // return address
  f.sp = sp;
#else
  // aarch64: frame of 176 bytes: x19..x28, x29, x30, d8..d15.
  auto* sp = reinterpret_cast<void**>(top - 176);
  std::memset(sp, 0, 176);
  sp[0] = &f;                                          // x19: arg
  sp[1] = reinterpret_cast<void*>(&fiber_main);        // x20: fn
  sp[11] = reinterpret_cast<void*>(&bnh_entry);        // x30
  f.sp = sp;
#endif
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = st->lo;
  f.ctx.uc_stack.ss_size = st->size;
  f.ctx.uc_link = nullptr;
  uintptr_t p = reinterpret_cast<uintptr_t>(&f);
  makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_trampoline), 2, unsigned(p), unsigned(p >> 32));
#endif
}

void resume(Group* g, Fiber* f) {
  t_fiber = f;
#ifdef BNH_ASAN
  __sanitizer_start_switch_fiber(&g->sched_fake_stack, f->stack->lo, f->stack->size);
#endif
#ifdef BNH_ASM_SWITCH
  bnh_switch(&g->sched_sp, f->sp);
#else
  swapcontext(&g->sched_ctx, &f->ctx);
#endif
#ifdef BNH_ASAN
  __sanitizer_finish_switch_fiber(g->sched_fake_stack, nullptr, nullptr);
#endif
  t_fiber = nullptr;
}

const char* state_name(State s) {
  switch (s) {
    case State::Ready:
      return "ready";
    case State::WaitSimd:
      return "in a simdgroup collective";
    case State::WaitBarrier:
      return "at threadgroup_barrier";
    case State::Done:
      return "done";
  }
  return "?";
}

std::string deadlock_report(Group* g) {
  std::ostringstream os;
  os << "deadlock: no thread can proceed (divergent barrier or collective). Threads:";
  int shown = 0;
  for (size_t i = 0; i < g->fibers.size() && shown < 12; ++i) {
    const auto& f = g->fibers[i];
    if (f.state != State::Done) {
      os << " [" << i << ": " << state_name(f.state);
      if (f.state == State::WaitSimd) {
        const auto& s = g->simd[f.ids.simdgroup_index_in_threadgroup];
        os << " " << (s.op ? s.op->name : "?");
      }
      os << "]";
      ++shown;
    }
  }
  return os.str();
}

// Per OS thread scratch of one launch.
struct Worker {
  Group group;
  std::vector<std::vector<unsigned char>> tg_memory; // 16-byte aligned views below
  std::vector<void*> tg_ptrs;
};

void run_threadgroup(
    Worker& w,
    const KernelInfo& k,
    U3 tg,
    U3 grid,
    U3 group_dims,
    const std::vector<void*>& buffers,
    const LaunchOptions& opt,
    uint64_t tg_linear) {
  Group& g = w.group;
  const uint32_t n = group_dims.x * group_dims.y * group_dims.z;
  const uint32_t nsg = (n + 31) / 32;
  g.fn = k.fn;
  g.kernel = k.name.c_str();
  g.fibers.resize(n);
  g.simd.assign(nsg, SimdGroup{});
  g.live = int(n);
  g.barrier_arrived = 0;
  g.exited = 0;
  g.barrier_orders_tg = true;
  g.failed = false;
  g.error.clear();

  ++t_epoch;
  // Uninitialized threadgroup memory: a NaN-ish pattern, as garbage.
  for (auto& m : w.tg_memory) {
    std::memset(m.data(), 0xCD, m.size());
  }
  g.tg_memory.clear();
  for (size_t i = 0; i < w.tg_ptrs.size(); ++i) {
    g.tg_memory.push_back({static_cast<unsigned char*>(w.tg_ptrs[i]), w.tg_memory[i].size() - 16});
  }
  snapshot_tg_memory(&g);

  for (uint32_t i = 0; i < n; ++i) {
    Fiber& f = g.fibers[i];
    f.state = State::Ready;
    f.stack = t_stacks->get(i);
    ThreadIds& id = f.ids;
    id.thread_index_in_threadgroup = i;
    id.thread_position_in_threadgroup = {i % group_dims.x, (i / group_dims.x) % group_dims.y,
                                         i / (group_dims.x * group_dims.y)};
    id.threadgroup_position_in_grid = tg;
    id.threads_per_threadgroup = group_dims;
    id.threadgroups_per_grid = grid;
    id.threads_per_grid = {grid.x * group_dims.x, grid.y * group_dims.y, grid.z * group_dims.z};
    id.thread_position_in_grid = {tg.x * group_dims.x + id.thread_position_in_threadgroup.x,
                                  tg.y * group_dims.y + id.thread_position_in_threadgroup.y,
                                  tg.z * group_dims.z + id.thread_position_in_threadgroup.z};
    id.simdgroup_index_in_threadgroup = i / 32;
    id.thread_index_in_simdgroup = i % 32;
    id.threads_per_simdgroup = 32;
    id.simdgroups_per_threadgroup = nsg;
    g.simd[i / 32].live |= 1u << (i % 32);
    f.inv = Invocation{buffers.data(), buffers.size(), w.tg_ptrs.data(), w.tg_ptrs.size(), &f.ids};
    prepare_fiber(f);
  }

  g.order = opt.order;
  g.rng.seed(opt.seed * 0x9E3779B97F4A7C15ull + tg_linear);
  g.rank_of.resize(n);
  g.fiber_at.resize(n);
  g.ready_rank.assign(n, 0);
  g.ready_list.clear();
  g.lowest = 0;
  for (uint32_t i = 0; i < n; ++i) {
    uint32_t r = opt.order == Order::Reverse ? n - 1 - i : i;
    g.rank_of[i] = r;
    g.fiber_at[r] = i;
  }
  for (uint32_t i = 0; i < n; ++i) {
    set_ready(&g, i);
  }

  t_group = &g;
  while (g.live > 0 && !g.failed) {
    int64_t i = pick(&g);
    if (i < 0) {
      g.failed = true;
      g.error = deadlock_report(&g);
      break;
    }
    resume(&g, &g.fibers[size_t(i)]);
  }
  t_group = nullptr;
  if (g.failed) {
    std::ostringstream os;
    os << "bnh: kernel " << k.name << " (" << k.file << "): " << g.error;
    throw std::runtime_error(os.str());
  }
}

} // namespace

// ---------------------------------------------------------------------------
// Fiber-side API

const ThreadIds& current_ids() {
  if (!t_fiber) {
    throw std::logic_error("bnh: a kernel builtin was used outside a harness launch");
  }
  return t_fiber->ids;
}

void threadgroup_local(void* p, size_t bytes) {
  uint64_t& e = t_local_epochs[p];
  if (e != t_epoch) {
    std::memset(p, 0xCD, bytes);
    e = t_epoch;
  }
}

void kernel_fail(const std::string& message) {
  throw KernelError(message);
}

void simd_collective(const SimdOp* op, const void* in, void* out, uint32_t arg) {
  Fiber* f = t_fiber;
  Group* g = t_group;
  if (!f) {
    throw std::logic_error("bnh: simdgroup function called outside a harness launch");
  }
  uint32_t sg = f->ids.simdgroup_index_in_threadgroup;
  uint32_t lane = f->ids.thread_index_in_simdgroup;
  SimdGroup& s = g->simd[sg];
  if (s.arrived == 0) {
    s.op = op;
  } else if (s.op != op) {
    kernel_fail(std::string("divergent simdgroup: lane ") + std::to_string(lane) + " reached " + op->name +
                " while other lanes wait in " + s.op->name);
  }
  s.in[lane] = in;
  s.out[lane] = out;
  s.arg[lane] = arg;
  s.arrived |= 1u << lane;
  f->state = State::WaitSimd;
  try_complete_simd(g, s, sg);
  switch_to_scheduler(f, false);
}

void threadgroup_barrier_wait(bool orders_threadgroup) {
  Fiber* f = t_fiber;
  Group* g = t_group;
  if (!f) {
    throw std::logic_error("bnh: threadgroup_barrier called outside a harness launch");
  }
  f->state = State::WaitBarrier;
  ++g->barrier_arrived;
  g->barrier_orders_tg = g->barrier_orders_tg && orders_threadgroup;
  try_complete_barrier(g);
  switch_to_scheduler(f, false);
}

void simdgroup_barrier_wait() {
  static const SimdOp op{nullptr, "simdgroup_barrier"};
  simd_collective(&op, nullptr, nullptr, 0);
}

// ---------------------------------------------------------------------------
// A fault inside a kernel (an access that hit a guard page of the executor)
// names the kernel before the previous handler (e.g. Python's faulthandler)
// takes over.

namespace {

thread_local const char* t_kernel_name = nullptr;
struct sigaction g_old_segv, g_old_bus;

void on_fault(int sig, siginfo_t* info, void*) {
  const char* k = t_kernel_name;
  Fiber* f = t_fiber;
  Group* g = t_group;
  if (k && f && g) {
    // A fault in a kernel's fiber (an access that hit a guard page): fail the
    // launch instead of the process, so that the message reaches Python as a
    // RuntimeError (a crash's stderr is lost under pytest's capture). The
    // fiber is abandoned (its stack is prepared afresh before reuse) and the
    // scheduler reports the error. Safe enough for a test harness: the fault
    // is synchronous, in kernel code, which takes no locks and allocates
    // nothing. SA_NODEFER keeps SIGSEGV deliverable after this jump.
    char msg[256];
    std::snprintf(msg, sizeof msg,
                  "faulted at address %p: an out-of-bounds access (tests/harness/run_sanitizers.sh reports the "
                  ".metal line)",
                  info ? info->si_addr : nullptr);
    std::ostringstream os;
    os << msg << " (thread " << f->ids.thread_index_in_threadgroup << " of threadgroup ("
       << f->ids.threadgroup_position_in_grid.x << ", " << f->ids.threadgroup_position_in_grid.y << ", "
       << f->ids.threadgroup_position_in_grid.z << "))";
    fail_group(g, os.str());
    switch_to_scheduler(f, true);
  }
  if (k) {
    char msg[512];
    int n = std::snprintf(msg, sizeof msg,
                          "\nbnh: kernel %s faulted at address %p: an out-of-bounds access? "
                          "tests/harness/run_sanitizers.sh reports the .metal line\n",
                          k, info ? info->si_addr : nullptr);
    if (n > 0) {
      ssize_t ignored = write(2, msg, size_t(std::min(n, int(sizeof msg) - 1)));
      (void)ignored;
    }
  }
  sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, nullptr); // re-fault into the old handler
}

void install_fault_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa {};
    sa.sa_sigaction = &on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  });
}

} // namespace

// ---------------------------------------------------------------------------
// launch

void launch(
    const std::string& name,
    U3 grid,
    U3 group,
    const std::vector<void*>& buffers,
    const std::vector<size_t>& tg_memory_bytes,
    const LaunchOptions& options) {
  const KernelInfo* k = find_kernel(name);
  if (!k) {
    throw std::runtime_error("bnh: no kernel named '" + name + "' in kernels/ (not instantiated?)");
  }
  uint64_t threads = uint64_t(group.x) * group.y * group.z;
  if (threads == 0 || threads > 1024) {
    throw std::runtime_error("bnh: " + name + ": threads per threadgroup must be 1..1024, got " +
                             std::to_string(threads));
  }
  size_t tg_total = 0;
  for (size_t b : tg_memory_bytes) {
    tg_total += (b + 15) / 16 * 16;
  }
  if (tg_total > kMaxThreadgroupMemory) {
    throw std::runtime_error("bnh: " + name + ": " + std::to_string(tg_total) +
                             " bytes of threadgroup memory requested; Apple GPUs allow 32768");
  }
  record_executed(name);
#ifndef BNH_ASAN
  install_fault_handler();
#endif
  uint64_t count = uint64_t(grid.x) * grid.y * grid.z;
  if (count == 0) {
    return;
  }
  // Threadgroup visiting order.
  std::vector<uint64_t> tgs(count);
  for (uint64_t i = 0; i < count; ++i) {
    tgs[i] = options.order == Order::Reverse ? count - 1 - i : i;
  }
  if (options.order == Order::Shuffled) {
    std::mt19937_64 rng(options.seed ^ 0xA5A5A5A5DEADBEEFull);
    std::shuffle(tgs.begin(), tgs.end(), rng);
  }

  int nthreads = options.threads;
  if (nthreads <= 0) {
    nthreads = 2;
    if (const char* e = std::getenv("BITNET_HARNESS_THREADS"); e && *e) {
      nthreads = std::max(1, std::atoi(e));
    }
  }
  nthreads = int(std::min<uint64_t>(uint64_t(nthreads), count));

  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex err_mutex;
  std::string first_error;

  auto work = [&]() {
    auto pool = borrow_pool();
    t_stacks = pool.get();
    t_kernel_name = k->name.c_str();
    Worker w;
    w.tg_memory.resize(tg_memory_bytes.size());
    w.tg_ptrs.resize(tg_memory_bytes.size());
    for (size_t i = 0; i < tg_memory_bytes.size(); ++i) {
      w.tg_memory[i].resize(tg_memory_bytes[i] + 16);
      uintptr_t p = reinterpret_cast<uintptr_t>(w.tg_memory[i].data());
      w.tg_ptrs[i] = reinterpret_cast<void*>((p + 15) & ~uintptr_t(15));
    }
    try {
      while (!failed.load()) {
        uint64_t i = next.fetch_add(1);
        if (i >= count) {
          break;
        }
        uint64_t lin = tgs[i];
        U3 tg{uint32_t(lin % grid.x), uint32_t((lin / grid.x) % grid.y), uint32_t(lin / (uint64_t(grid.x) * grid.y))};
        run_threadgroup(w, *k, tg, grid, group, buffers, options, lin);
      }
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lock(err_mutex);
      if (!failed.exchange(true)) {
        first_error = e.what();
      }
    }
    t_stacks = nullptr;
    t_kernel_name = nullptr;
    return_pool(std::move(pool));
  };
  if (nthreads <= 1) {
    work();
  } else {
    std::vector<std::thread> pool;
    for (int t = 0; t < nthreads; ++t) {
      pool.emplace_back(work);
    }
    for (auto& t : pool) {
      t.join();
    }
  }
  if (failed.load()) {
    throw std::runtime_error(first_error);
  }
}

} // namespace bnh
