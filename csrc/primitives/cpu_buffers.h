// Moving MLX arrays in and out of the plain float32 / int8 buffers the CPU
// kernels take. Called inside dispatched CPU tasks, where input data is ready.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "mlx/array.h"

namespace bitnet_ext {

namespace mx = mlx::core;

// A float32 buffer that resize() does not zero (every use overwrites it):
// zeroing a prefill product's 14 MB output buffer took as long as filling it.
template <class T>
struct DefaultInitAllocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using FloatBuffer = std::vector<float, DefaultInitAllocator<float>>;

// An array seen as a (rows x cols) float32 matrix, cols = last axis.
// Borrows the array's memory when it already is float32 with unit stride
// along the last axis and uniformly strided rows; otherwise converts
// (float16, bfloat16, float32, any strides) into owned storage.
struct FloatRows {
  const float* data = nullptr;
  int64_t ld = 0; // elements between consecutive rows
  int64_t rows = 0;
  int64_t cols = 0;
  FloatBuffer storage;
};
FloatRows read_float_rows(const mx::array& a);

// Same for a (rows x cols) int8 view of a contiguous int8 array (no copy).
// Scale vectors: the float32 values of a small array (any float dtype).
std::vector<float> read_floats(const mx::array& a);

// Allocates `out` (row-contiguous) and returns a float32 destination for the
// kernel: out's own memory when out is float32, else `scratch`, which the
// caller converts with finish_float_output().
float* float_output(mx::array& out, FloatBuffer& scratch);
void finish_float_output(mx::array& out, const FloatBuffer& scratch);

// Allocate a row-contiguous output buffer for `out`.
void allocate(mx::array& out);

// glibc's malloc returns a freed buffer of more than 128 KiB (its default
// threshold, adapted up to 32 MiB) to the kernel, so the next one of that size
// is fresh pages that fault in one by one. A 512-token prefill allocates and
// frees ~40 such buffers per layer (MLX's outputs on the CPU are malloc'ed,
// and so are the kernels' float32 and int8 temporaries): with buffers up to
// 64 MiB kept in the heap and up to 256 MiB of free memory kept at its top,
// one 2B-4T layer's prefill evaluated alone took 45.7 instead of 65 ms (Intel
// Xeon VM, int8 activations, 2 threads); mlx-lm's whole prefill gained 2-4%.
// Applied once when bitnet_ext is imported, unless BITNET_EXT_MALLOC_TUNING=0;
// process-wide (glibc has one malloc). Returns whether it was applied (false:
// other C libraries, or the variable says no).
bool tune_malloc_for_large_buffers();

} // namespace bitnet_ext
