#include "executor.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>

namespace bnh {

namespace {

constexpr unsigned char kCanary = 0xA5;
constexpr unsigned char kGarbage = 0xCD;

#if defined(__SANITIZE_ADDRESS__)
#define BNH_EXEC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BNH_EXEC_ASAN 1
#endif
#endif

// A device buffer of exactly `bytes` bytes. Normally it ends exactly at a
// PROT_NONE page (any read or write past the end faults at once; the start
// keeps the natural alignment of the data since every buffer's size is a
// multiple of its element size, and 16-byte vector loads only touch buffers
// whose size is a multiple of 16) and the bytes in front of it in its first
// page hold a canary checked after each launch. Under AddressSanitizer it is
// a heap block of exactly `bytes` bytes instead, so ASan reports any
// out-of-bounds access with the shader's source line.
class Guarded {
 public:
  Guarded(size_t bytes, int fill) : bytes_(bytes) {
#ifdef BNH_EXEC_ASAN
    data_ = static_cast<unsigned char*>(::operator new(std::max<size_t>(bytes, 1), std::align_val_t(16)));
#else
    page_ = size_t(sysconf(_SC_PAGESIZE));
    data_pages_ = (std::max<size_t>(bytes, 1) + page_ - 1) / page_ * page_;
    map_ = data_pages_ + 2 * page_;
    void* p = mmap(nullptr, map_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw std::runtime_error("bnh: cannot allocate a guarded buffer");
    }
    base_ = static_cast<unsigned char*>(p);
    mprotect(base_, page_, PROT_NONE);
    mprotect(base_ + page_ + data_pages_, page_, PROT_NONE);
    std::memset(base_ + page_, kCanary, data_pages_);
    data_ = base_ + page_ + data_pages_ - bytes;
#endif
    if (fill >= 0) {
      std::memset(data_, fill, bytes_);
    }
  }
  ~Guarded() {
#ifdef BNH_EXEC_ASAN
    ::operator delete(data_, std::align_val_t(16));
#else
    munmap(base_, map_);
#endif
  }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;

  void* data() const {
    return data_;
  }
  bool canary_intact() const {
#ifndef BNH_EXEC_ASAN
    for (unsigned char* p = base_ + page_; p < data_; ++p) {
      if (*p != kCanary) {
        return false;
      }
    }
#endif
    return true;
  }

 private:
  size_t bytes_;
  unsigned char* data_;
#ifndef BNH_EXEC_ASAN
  size_t page_, data_pages_, map_;
  unsigned char* base_;
#endif
};

} // namespace

void execute_plan(
    const bitnet_ext::gpu::LaunchPlan& plan,
    const std::vector<HostBuffer>& inputs,
    const std::vector<HostBuffer>& outputs,
    const LaunchOptions& options) {
  using namespace bitnet_ext::gpu;
  std::vector<std::unique_ptr<Guarded>> in, out, tmp;
  for (const auto& b : inputs) {
    in.push_back(std::make_unique<Guarded>(b.bytes, -1));
    std::memcpy(in.back()->data(), b.data, b.bytes);
  }
  for (const auto& b : outputs) {
    out.push_back(std::make_unique<Guarded>(b.bytes, kGarbage));
  }
  for (const auto& t : plan.temporaries) {
    tmp.push_back(std::make_unique<Guarded>(t.bytes, t.zero_init ? 0 : kGarbage));
  }

  auto describe_binding = [](const char* kind, int index, int slot) {
    return std::string(kind) + " " + std::to_string(index) + " at buffer(" + std::to_string(slot) + ")";
  };

  for (const auto& k : plan.kernels) {
    std::vector<void*> slots;
    std::vector<std::unique_ptr<Guarded>> consts;
    auto bind = [&](int slot, void* p, const std::string& what) {
      if (slot < 0 || slot > 30) {
        throw std::runtime_error("bnh: plan for " + k.name + ": bad slot for " + what);
      }
      if (slots.size() <= size_t(slot)) {
        slots.resize(slot + 1, nullptr);
      }
      if (slots[slot]) {
        throw std::runtime_error("bnh: plan for " + k.name + ": buffer(" + std::to_string(slot) + ") bound twice");
      }
      slots[slot] = p;
    };
    for (const auto& b : k.buffers) {
      const char* kind = b.kind == ArgKind::Input ? "input" : b.kind == ArgKind::Output ? "output" : "temp";
      auto& list = b.kind == ArgKind::Input ? in : b.kind == ArgKind::Output ? out : tmp;
      if (b.index < 0 || size_t(b.index) >= list.size()) {
        throw std::runtime_error("bnh: plan for " + k.name + " binds missing " +
                                 describe_binding(kind, b.index, b.slot));
      }
      bind(b.slot, list[b.index]->data(), describe_binding(kind, b.index, b.slot));
    }
    for (const auto& c : k.constants) {
      consts.push_back(std::make_unique<Guarded>(4, -1));
      if (c.type == Constant::Type::Int32) {
        std::memcpy(consts.back()->data(), &c.i32, 4);
      } else {
        std::memcpy(consts.back()->data(), &c.f32, 4);
      }
      bind(c.slot, consts.back()->data(), "constant " + c.name);
    }
    std::vector<size_t> tg;
    for (const auto& t : k.threadgroup_memory) {
      if (tg.size() <= size_t(t.slot)) {
        tg.resize(t.slot + 1, 0);
      }
      tg[t.slot] = t.bytes;
    }
    launch(k.name, U3{k.grid.x, k.grid.y, k.grid.z}, U3{k.group.x, k.group.y, k.group.z}, slots, tg, options);

    auto check = [&](const std::vector<std::unique_ptr<Guarded>>& list, const char* kind) {
      for (size_t i = 0; i < list.size(); ++i) {
        if (!list[i]->canary_intact()) {
          throw std::runtime_error("bnh: kernel " + k.name + " wrote outside " + kind + " " + std::to_string(i));
        }
      }
    };
    check(in, "input");
    check(out, "output");
    check(tmp, "temporary");
    check(consts, "constant");
  }
  for (size_t i = 0; i < outputs.size(); ++i) {
    std::memcpy(outputs[i].data, out[i]->data(), outputs[i].bytes);
  }
}

} // namespace bnh
