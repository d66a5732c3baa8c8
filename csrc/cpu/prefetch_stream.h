// Software prefetch for weights read once per call (the float and int8 output
// heads stream hundreds of MB): non-temporal (locality 0), so they do not
// evict what is reused. The ternary GEMVs prefetch into L2 instead
// (kernels_simd.h, prefetch), which measured best there.
#pragma once

namespace bitnet_ext::cpu {

inline void prefetch_stream(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 0);
#else
  (void)p;
#endif
}

} // namespace bitnet_ext::cpu
