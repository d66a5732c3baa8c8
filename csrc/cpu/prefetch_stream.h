// Software prefetch for weights read once per call (the float and int8 output
// heads stream hundreds of MB) into all cache levels (prefetcht0). Measured on
// the bf16 head GEMV (128256 x 2560, M = 1): on an Intel Xeon VM (AVX-512,
// 1 thread) prefetcht0 read 13.3-13.7 GB/s where the earlier non-temporal
// prefetch (locality 0) read 7.3-7.5 and none 12.7; on Zen 4 and Zen 5 VMs
// every variant read the same within noise. The ternary GEMVs prefetch into
// L2 instead (kernels_simd.h, prefetch), which measured best there.
#pragma once

namespace bitnet_ext::cpu {

inline void prefetch_stream(const void* p) {
#if defined(__GNUC__) || defined(__clang__)
  __builtin_prefetch(p, 0, 3);
#else
  (void)p;
#endif
}

} // namespace bitnet_ext::cpu
