// attention of attention_kernel.h: the active ISA level's implementation.
#include "attention_kernel.h"
#include "attention_impl.h"
#include "kernels.h"

namespace bitnet_ext::cpu {

namespace {

AttentionFn active_attention() {
  switch (active_isa()) {
#if defined(BITNET_EXT_HAVE_X86_KERNELS)
    case Isa::Avx2:
      return attention_avx2();
    case Isa::Avx512:
    case Isa::Avx512Vnni:
    case Isa::Avx512Amx:
    case Isa::Avx512Bf16:
      return attention_avx512();
#endif
#if defined(BITNET_EXT_HAVE_ARM_KERNELS)
    case Isa::Neon:
    case Isa::NeonDot:
      return attention_neon();
#endif
    default:
      return attention_scalar();
  }
}

} // namespace

void attention(const AttentionArgs& a) {
  if (a.B <= 0 || a.Hq <= 0 || a.L <= 0 || a.D <= 0) return;
  active_attention()(a);
}

} // namespace bitnet_ext::cpu
