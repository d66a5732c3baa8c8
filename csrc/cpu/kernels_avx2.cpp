// avx2 level: the shared templates of kernels_simd.h over OpsAvx2.
// Compiled with its own ISA flags (see CMakeLists.txt).
#include "simd_x86.h"
// simd_x86.h first: it defines the policy used below.
#include "kernels_simd.h"

namespace bitnet_ext::cpu {

const KernelTable& table_avx2() {
  static constexpr KernelTable t = Simd<OpsAvx2>::table();
  return t;
}

} // namespace bitnet_ext::cpu
