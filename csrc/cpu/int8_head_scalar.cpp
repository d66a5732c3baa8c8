// Portable level of the int8 head (also what NEON builds run for now).
#include "int8_head_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct IOpsScalar {
  static constexpr int L = 16; // plain loops the compiler may vectorize
  static constexpr int32_t kWShift = 0;
  struct vi {
    int32_t v;
  };
  static vi zero() { return {0}; }
  static vi tail(vi acc, const int8_t* x, const int8_t* w, int n) {
    for (int i = 0; i < n; ++i) acc.v += int32_t{x[i]} * int32_t{w[i]};
    return acc;
  }
  static vi step(vi acc, const int8_t* x, const int8_t* w) { return tail(acc, x, w, L); }
  static int32_t hsum(vi acc) { return acc.v; }
};

} // namespace

Int8HeadFn int8_head_scalar() {
  return &Int8HeadSimd<IOpsScalar>::matmul;
}

} // namespace bitnet_ext::cpu
