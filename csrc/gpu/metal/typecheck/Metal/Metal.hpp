// NOT Apple's metal-cpp. A declaration-only stand-in for the few metal-cpp
// types and methods that MLX's mlx/backend/metal/device.h and bitnet_ext's
// Metal host code (csrc/gpu/metal/*.cpp) name, so that those files can be
// type-checked on a machine without the macOS SDK (Linux):
//
//   csrc/gpu/metal/typecheck/typecheck.sh      (also run by tests/test_metal_gpu.py)
//
// Signatures copied from metal-cpp (macOS 14.2 release) for every method the
// host code calls: NS::String::utf8String, NS::Array::count/object<T>,
// NS::AutoreleasePool::alloc/init, NS::Object release,
// MTL::Library::functionNames, MTL::ComputePipelineState::
// maxTotalThreadsPerThreadgroup/threadExecutionWidth, MTL::Size, and the
// ComputeCommandEncoder methods device.h calls inline. Nothing here is ever
// compiled into a real build (cmake/metal.cmake does not add this directory).
#pragma once

#include <cstddef>
#include <cstdint>

namespace NS {

using UInteger = unsigned long;
using Integer = long;

class Object {
 public:
  void release();
  void retain();
};

template <class T>
class SharedPtr {
 public:
  SharedPtr() = default;
  SharedPtr(std::nullptr_t) {}
  T* get() const {
    return p_;
  }
  T* operator->() const {
    return p_;
  }
  explicit operator bool() const {
    return p_ != nullptr;
  }
  bool operator==(const SharedPtr& o) const {
    return p_ == o.p_;
  }

 private:
  T* p_ = nullptr;
};
template <class T>
SharedPtr<T> TransferPtr(T* p);
template <class T>
SharedPtr<T> RetainPtr(T* p);

class String : public Object {
 public:
  const char* utf8String() const;
};

class Array : public Object {
 public:
  template <class _Object = Object>
  _Object* object(UInteger index) const;
  UInteger count() const;
};

class AutoreleasePool : public Object {
 public:
  static AutoreleasePool* alloc();
  AutoreleasePool* init();
  void drain();
};

class Error : public Object {
 public:
  String* localizedDescription() const;
};

} // namespace NS

namespace MTL {

struct Size {
  Size() = default;
  Size(NS::UInteger width, NS::UInteger height, NS::UInteger depth);
  NS::UInteger width;
  NS::UInteger height;
  NS::UInteger depth;
};

enum DataType : NS::UInteger { DataTypeNone = 0 };
enum BarrierScope : NS::UInteger { BarrierScopeBuffers = 1 };

class Allocation : public NS::Object {};
class Resource : public Allocation {};
class Buffer : public Resource {
 public:
  void* contents();
  NS::UInteger length() const;
};
class Fence : public NS::Object {};
class ResidencySet : public NS::Object {};
class Function : public NS::Object {};
class LinkedFunctions : public NS::Object {};

class Library : public NS::Object {
 public:
  Function* newFunction(const NS::String* functionName);
  NS::Array* functionNames() const;
};

class ComputePipelineState : public NS::Object {
 public:
  NS::UInteger maxTotalThreadsPerThreadgroup() const;
  NS::UInteger threadExecutionWidth() const;
  NS::UInteger staticThreadgroupMemoryLength() const;
};

class ComputeCommandEncoder : public NS::Object {
 public:
  void setComputePipelineState(const ComputePipelineState* state);
  void setBytes(const void* bytes, NS::UInteger length, NS::UInteger index);
  void setBuffer(const Buffer* buffer, NS::UInteger offset, NS::UInteger index);
  void setThreadgroupMemoryLength(NS::UInteger length, NS::UInteger index);
  void dispatchThreadgroups(Size threadgroupsPerGrid, Size threadsPerThreadgroup);
  void dispatchThreads(Size threadsPerGrid, Size threadsPerThreadgroup);
  void memoryBarrier(BarrierScope scope);
};

class CommandBuffer : public NS::Object {};
class CommandQueue : public NS::Object {};

class Device : public NS::Object {
 public:
  NS::String* name() const;
};

} // namespace MTL
