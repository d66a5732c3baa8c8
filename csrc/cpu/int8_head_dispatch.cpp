// int8_matmul of int8_head.h: the active ISA level's implementation.
#include "int8_head.h"
#include "int8_head_impl.h"
#include "kernels.h"

namespace bitnet_ext::cpu {

namespace {

Int8HeadFn active_int8_head() {
  switch (active_isa()) {
#if defined(BITNET_EXT_HAVE_X86_KERNELS)
    case Isa::Avx2:
      return int8_head_avx2();
    case Isa::Avx512:
      return int8_head_avx512();
    case Isa::Avx512Vnni:
    case Isa::Avx512Amx:
    case Isa::Avx512Bf16:
      return int8_head_avx512_vnni();
#endif
    default:
      // NEON levels: the portable loops for now (sdot kernel not written yet).
      return int8_head_scalar();
  }
}

} // namespace

void int8_matmul(const int8_t* xq, const float* xscale, const int8_t* wq, const float* s, float* y, int64_t M,
                 int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  active_int8_head()(xq, xscale, wq, s, y, M, N, K);
}

} // namespace bitnet_ext::cpu
