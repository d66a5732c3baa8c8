// dense_matmul of dense.h: the active ISA level's implementation.
#include "dense.h"
#include "dense_impl.h"
#include "kernels.h"

namespace bitnet_ext::cpu {

namespace {

DenseFn active_dense() {
  switch (active_isa()) {
#if defined(BITNET_EXT_HAVE_X86_KERNELS)
    case Isa::Avx2:
      return dense_avx2();
    case Isa::Avx512:
    case Isa::Avx512Vnni:
    case Isa::Avx512Amx:
    case Isa::Avx512Bf16:
      return dense_avx512();
#endif
#if defined(BITNET_EXT_HAVE_ARM_KERNELS)
    case Isa::Neon:
    case Isa::NeonDot:
      return dense_neon();
#endif
    default:
      return dense_scalar();
  }
}

} // namespace

void dense_matmul(const float* x, int64_t ldx, const void* w, DenseType wtype, float* y, int64_t M, int64_t N,
                  int64_t K) {
  if (M <= 0 || N <= 0) return;
  active_dense()(x, ldx, w, wtype, y, M, N, K);
}

} // namespace bitnet_ext::cpu
