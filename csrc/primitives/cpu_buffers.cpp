#include "primitives/cpu_buffers.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <type_traits>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "mlx/allocator.h"
#include "mlx/types/half_types.h"
#include "primitives/bf16_bits.h"
#include "primitives/bf16_rows.h"
#include "primitives/strided_rows.h"
#include "thread_pool.h"

namespace bitnet_ext {

namespace {

// Offset (in elements) of the first element of logical row `row`, where rows
// enumerate all axes but the last in row-major order.
int64_t row_offset(const mx::array& a, int64_t row) {
  int64_t offset = 0;
  for (int axis = a.ndim() - 2; axis >= 0; --axis) {
    int64_t extent = a.shape(axis);
    offset += (row % extent) * a.strides()[axis];
    row /= extent;
  }
  return offset;
}

// True when every logical row starts `ld` elements after the previous one.
bool rows_uniformly_strided(const mx::array& a, int64_t& ld) {
  if (a.ndim() < 2) {
    ld = a.ndim() == 1 ? a.shape(0) : 1;
    return true;
  }
  // Axes before the last must nest like a row-major layout with row pitch ld.
  ld = a.strides()[a.ndim() - 2];
  int64_t expected = ld;
  for (int axis = a.ndim() - 2; axis >= 0; --axis) {
    if (a.shape(axis) != 1 && a.strides()[axis] != expected) {
      return false;
    }
    expected *= a.shape(axis);
  }
  return true;
}

// Elements per task of the conversions: a decode row runs inline.
constexpr int64_t kConvertGrain = 1 << 15;

template <typename T>
void convert_rows(const mx::array& a, FloatRows& r) {
  r.storage.resize(static_cast<size_t>(r.rows * r.cols));
  const T* src = a.data<T>();
  const int64_t col_stride = a.ndim() ? a.strides().back() : 1;
  const int64_t cols = r.cols;
  float* dst = r.storage.data();
  cpu::parallel_for(0, r.rows, std::max<int64_t>(1, kConvertGrain / std::max<int64_t>(1, cols)),
                    [&](int64_t r0, int64_t r1) {
                      for (int64_t row = r0; row < r1; ++row) {
                        const T* s = src + row_offset(a, row);
                        float* d = dst + row * cols;
                        if (std::is_same_v<T, mx::bfloat16_t> && col_stride == 1) { // per vector width
                          bf16_to_float_row(reinterpret_cast<const uint16_t*>(s), d, cols);
                        } else if (col_stride == 1) {
                          for (int64_t c = 0; c < cols; ++c) d[c] = to_float(s[c]);
                        } else {
                          for (int64_t c = 0; c < cols; ++c) d[c] = to_float(s[c * col_stride]);
                        }
                      }
                    });
  r.data = r.storage.data();
  r.ld = r.cols;
}

} // namespace

FloatRows read_float_rows(const mx::array& a) {
  FloatRows r;
  r.cols = a.ndim() ? a.shape(-1) : 1;
  r.rows = r.cols ? static_cast<int64_t>(a.size()) / r.cols : 0;
  int64_t ld = 0;
  bool unit_cols = a.ndim() == 0 || a.strides().back() == 1 || r.cols == 1;
  if (a.dtype() == mx::float32 && unit_cols && rows_uniformly_strided(a, ld) && ld >= 0) {
    r.data = a.data<float>();
    r.ld = r.rows > 1 ? ld : r.cols;
    return r;
  }
  switch (a.dtype()) {
    case mx::float32:
      convert_rows<float>(a, r);
      break;
    case mx::float16:
      convert_rows<mx::float16_t>(a, r);
      break;
    case mx::bfloat16:
      convert_rows<mx::bfloat16_t>(a, r);
      break;
    default:
      // The ops only build nodes for float inputs; reaching this is a bug.
      throw std::logic_error("bitnet_ext: read_float_rows got a non-float array");
  }
  return r;
}

std::vector<float> read_floats(const mx::array& a) {
  FloatRows r = read_float_rows(a);
  std::vector<float> values(static_cast<size_t>(r.rows * r.cols));
  for (int64_t row = 0; row < r.rows; ++row) {
    for (int64_t c = 0; c < r.cols; ++c) {
      values[row * r.cols + c] = r.data[row * r.ld + c];
    }
  }
  return values;
}

bool tune_malloc_for_large_buffers() {
#if defined(__GLIBC__)
  const char* env = std::getenv("BITNET_EXT_MALLOC_TUNING");
  if (env != nullptr && std::string(env) == "0") {
    return false;
  }
  constexpr int kKeepInHeapBytes = 64 << 20; // M_MMAP_THRESHOLD
  constexpr int kKeepFreeBytes = 256 << 20; // M_TRIM_THRESHOLD
  return mallopt(M_MMAP_THRESHOLD, kKeepInHeapBytes) == 1 && mallopt(M_TRIM_THRESHOLD, kKeepFreeBytes) == 1;
#else
  return false;
#endif
}

void allocate(mx::array& out) {
  out.set_data(mx::allocator::malloc(out.nbytes()));
}

float* float_output(mx::array& out, FloatBuffer& scratch) {
  if (out.dtype() == mx::float32) {
    return out.data<float>();
  }
  scratch.resize(out.size());
  return scratch.data();
}

void finish_float_output(mx::array& out, const FloatBuffer& scratch) {
  const int64_t n = static_cast<int64_t>(out.size());
  const float* src = scratch.data();
  switch (out.dtype()) {
    case mx::float32:
      return;
    case mx::float16: {
      auto* d = out.data<mx::float16_t>();
      cpu::parallel_for(0, n, kConvertGrain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) d[i] = static_cast<mx::float16_t>(src[i]);
      });
      return;
    }
    case mx::bfloat16: {
      auto* d = reinterpret_cast<uint16_t*>(out.data<mx::bfloat16_t>());
      cpu::parallel_for(0, n, kConvertGrain, [&](int64_t b, int64_t e) { float_to_bf16_row(src + b, d + b, e - b); });
      return;
    }
    default:
      throw std::logic_error("bitnet_ext: float output of unexpected dtype");
  }
}

} // namespace bitnet_ext
