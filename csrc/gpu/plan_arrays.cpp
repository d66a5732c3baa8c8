// See plan_arrays.h.
#include "gpu/plan_arrays.h"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "mlx/allocator.h"
#include "mlx/ops.h"
#include "mlx/primitives.h"
#include "mlx/utils.h"

namespace bitnet_ext::gpu {

namespace {

bool print_plans() {
  static const bool on = [] {
    const char* v = std::getenv("BITNET_EXT_PRINT_PLANS");
    return v != nullptr && *v != '\0' && std::string(v) != "0";
  }();
  return on;
}

} // namespace

Dtype plan_dtype(mx::Dtype d, const char* op) {
  if (d == mx::float32) {
    return Dtype::float32;
  }
  if (d == mx::float16) {
    return Dtype::float16;
  }
  if (d == mx::bfloat16) {
    return Dtype::bfloat16;
  }
  std::ostringstream os;
  os << "bitnet_ext: " << op << ": the GPU kernels take float16, bfloat16 or float32, got " << d << ".";
  throw std::invalid_argument(os.str());
}

int64_t rows(const mx::array& x) {
  if (x.ndim() == 0 || x.shape(-1) == 0) {
    return 0;
  }
  return static_cast<int64_t>(x.size() / x.shape(-1));
}

bool per_row(const mx::array& scale) {
  return scale.size() > 1;
}

std::optional<mx::array> row_contiguous_copy(const mx::array& a, const mx::Stream& s) {
  if (a.size() == 0 || a.flags().row_contiguous) {
    return std::nullopt;
  }
  // MLX's own ensure_row_contiguous calls contiguous_copy_gpu, which libmlx
  // does not export. Its Contiguous primitive does the same copy and is
  // reachable through the exported mx::contiguous op: build the node and
  // evaluate it here, on our stream (its eval_gpu encodes MLX's copy kernel
  // into this stream's encoder, ahead of the kernels we encode next, ordered
  // by the encoder's own read-after-write tracking).
  mx::array c = mx::contiguous(a, /* allow_col_major = */ false, s);
  std::vector<mx::array> outs{c};
  c.primitive().eval_gpu(c.inputs(), outs);
  c.detach();
  return c;
}

bool prepare_outputs(
    const char* op,
    const LaunchPlan& plan,
    const std::vector<mx::array>& inputs,
    std::vector<mx::array>& outputs,
    const mx::Stream& s,
    const SetData& set_data) {
  for (auto& o : outputs) {
    if (set_data) {
      set_data(o, o.nbytes());
    } else {
      o.set_data(mx::allocator::malloc(o.nbytes()));
    }
  }
  if (print_plans()) {
    std::cerr << "[bitnet_ext] " << op << " on " << s << ":\n" << describe(plan) << std::flush;
  }
  if (plan.kernels.empty()) {
    return false;
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    if (inputs[i].size() != 0 && !inputs[i].flags().row_contiguous) {
      throw std::logic_error(
          std::string("bitnet_ext: ") + op + ": input " + std::to_string(i) +
          " is not row-contiguous (internal error: eval_gpu must make its inputs row-contiguous first).");
    }
  }
  return true;
}

mx::array allocate_temporary(const char* op, const Temporary& t, const SetData& set_data) {
  const size_t bytes = std::max<size_t>((t.bytes + 15) / 16 * 16, 16);
  if (bytes > size_t(std::numeric_limits<int32_t>::max())) {
    throw std::runtime_error(
        std::string("bitnet_ext: ") + op + ": temporary " + t.name + " of " + std::to_string(t.bytes) +
        " bytes is too large");
  }
  mx::array a({static_cast<int32_t>(bytes)}, mx::uint8, nullptr, {});
  if (set_data) {
    set_data(a, bytes);
  } else {
    a.set_data(mx::allocator::malloc(bytes));
  }
  return a;
}

} // namespace bitnet_ext::gpu
