#include "primitives/cpu_buffers.h"

#include <stdexcept>

#include "mlx/allocator.h"
#include "mlx/types/half_types.h"

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

template <typename T>
void convert_rows(const mx::array& a, FloatRows& r) {
  r.storage.resize(static_cast<size_t>(r.rows * r.cols));
  const T* src = a.data<T>();
  int64_t col_stride = a.ndim() ? a.strides().back() : 1;
  for (int64_t row = 0; row < r.rows; ++row) {
    const T* s = src + row_offset(a, row);
    float* d = r.storage.data() + row * r.cols;
    if (col_stride == 1) {
      for (int64_t c = 0; c < r.cols; ++c) {
        d[c] = static_cast<float>(s[c]);
      }
    } else {
      for (int64_t c = 0; c < r.cols; ++c) {
        d[c] = static_cast<float>(s[c * col_stride]);
      }
    }
  }
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

void allocate(mx::array& out) {
  out.set_data(mx::allocator::malloc(out.nbytes()));
}

float* float_output(mx::array& out, std::vector<float>& scratch) {
  if (out.dtype() == mx::float32) {
    return out.data<float>();
  }
  scratch.resize(out.size());
  return scratch.data();
}

void finish_float_output(mx::array& out, const std::vector<float>& scratch) {
  size_t n = out.size();
  switch (out.dtype()) {
    case mx::float32:
      return;
    case mx::float16: {
      auto* d = out.data<mx::float16_t>();
      for (size_t i = 0; i < n; ++i) {
        d[i] = static_cast<mx::float16_t>(scratch[i]);
      }
      return;
    }
    case mx::bfloat16: {
      auto* d = out.data<mx::bfloat16_t>();
      for (size_t i = 0; i < n; ++i) {
        d[i] = static_cast<mx::bfloat16_t>(scratch[i]);
      }
      return;
    }
    default:
      throw std::logic_error("bitnet_ext: float output of unexpected dtype");
  }
}

} // namespace bitnet_ext
