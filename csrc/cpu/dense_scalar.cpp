// Scalar level of the dense matmul (dense_impl.h over one-lane "vectors"):
// the portable fallback and the reference of the SIMD levels.
#include "attention_impl.h"
#include "dense_impl.h"

namespace bitnet_ext::cpu {
namespace {

struct DOpsScalar {
  static constexpr int L = 1;
  static constexpr int kGemvRows = 4;
  static constexpr int kGemvRowsW1 = 4;
  static constexpr int kMR = 4;
  static constexpr int kGemmMinRows = 8;
  using vf = float;
  static vf zero() { return 0.0f; }
  static vf lf(const float* p) { return *p; }
  template <class T>
  static vf lw(const T* p) {
    return to_float(*p);
  }
  static void lw_pairs(const Bf16* p, vf& even, vf& odd) {
    even = to_float(p[0]);
    odd = to_float(p[1]);
  }
  static vf bf(const float* p) { return *p; }
  static vf fmadd(vf a, vf b, vf c) { return a * b + c; }
  static vf add(vf a, vf b) { return a + b; }
  static float hsum(vf v) { return v; }
  static void sf(float* p, vf v) { *p = v; }
};

} // namespace

DenseFn dense_scalar() {
  return &DenseSimd<DOpsScalar>::matmul;
}

AttentionFn attention_scalar() {
  return &AttentionSimd<DOpsScalar>::run;
}

} // namespace bitnet_ext::cpu
