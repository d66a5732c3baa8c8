// neon level: the shared templates of kernels_simd.h over OpsNeon.
// Compiled with its own ISA flags (see CMakeLists.txt).
#include "simd_neon.h"
// simd_neon.h first: it defines the policy used below.
#include "kernels_simd.h"

namespace bitnet_ext::cpu {

const KernelTable& table_neon() {
  static constexpr KernelTable t = Simd<OpsNeon>::table();
  return t;
}

} // namespace bitnet_ext::cpu
