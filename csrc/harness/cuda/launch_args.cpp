#include "launch_args.h"

#include <cstring>
#include <stdexcept>

#include "param_kind.h"

namespace bnc {

namespace gpu = bitnet_ext::gpu;

uint32_t constant_bits(const gpu::Constant& c) {
  uint32_t bits = 0;
  if (c.type == gpu::Constant::Type::Int32) {
    std::memcpy(&bits, &c.i32, 4);
  } else {
    std::memcpy(&bits, &c.f32, 4);
  }
  return bits;
}

PackedLaunch pack_launch(
    const gpu::KernelLaunch& k,
    const KernelInfo& info,
    const PointerOf& pointer_of,
    size_t max_shared_bytes,
    const char* limit_name) {
  const std::string where = "bnc: plan for " + k.name + ": ";
  const uint64_t threads = uint64_t(k.group.x) * k.group.y * k.group.z;
  if (threads == 0 || threads > 1024 || threads % 32 != 0) {
    // Simdgroups map to warps one to one only for whole simdgroups.
    throw std::runtime_error(where + "threads per threadgroup must be a multiple of 32 in 32..1024, got " +
                             std::to_string(threads));
  }
  PackedLaunch p;
  bool bound[kMaxBuffers] = {};
  bool tg_bound[kMaxThreadgroup] = {};
  auto claim = [&](int slot, const std::string& what) {
    if (slot < 0 || slot >= kMaxBuffers) {
      throw std::runtime_error(where + "bad slot for " + what);
    }
    if (bound[slot]) {
      throw std::runtime_error(where + "buffer(" + std::to_string(slot) + ") bound twice");
    }
    bound[slot] = true;
  };
  for (const auto& b : k.buffers) {
    claim(b.slot, "an array");
    void* ptr = pointer_of(b.kind, b.index);
    if (!ptr) {
      throw std::runtime_error(where + "binds a missing array at buffer(" + std::to_string(b.slot) + ")");
    }
    p.args.buffers[b.slot] = ptr;
  }
  for (const auto& c : k.constants) {
    claim(c.slot, "constant " + c.name);
    p.args.constants[c.slot] = constant_bits(c);
  }
  for (const auto& t : k.threadgroup_memory) {
    if (t.slot < 0 || t.slot >= kMaxThreadgroup) {
      throw std::runtime_error(where + "bad threadgroup memory slot " + std::to_string(t.slot));
    }
    tg_bound[t.slot] = true;
    p.args.threadgroup_offset[t.slot] = uint32_t(p.shared_bytes);
    p.shared_bytes += (t.bytes + 15) / 16 * 16;
  }
  if (p.shared_bytes > max_shared_bytes) {
    throw std::runtime_error(where + "asks for " + std::to_string(p.shared_bytes) + " bytes of threadgroup memory; " +
                             limit_name + " allow " + std::to_string(max_shared_bytes));
  }
  for (int e : info.params) {
    const auto kind = bnh::ParamKind(e / 256);
    const int index = e % 256;
    if (kind == bnh::ParamKind::Buffer && !bound[index]) {
      throw std::runtime_error(where + "[[buffer(" + std::to_string(index) + ")]] is not bound");
    }
    if (kind == bnh::ParamKind::Threadgroup && !tg_bound[index]) {
      throw std::runtime_error(where + "[[threadgroup(" + std::to_string(index) + ")]] has no memory");
    }
  }
  return p;
}

} // namespace bnc
