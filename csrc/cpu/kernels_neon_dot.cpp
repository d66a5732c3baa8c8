// Placeholder: uses the scalar kernels until the vectorized ones land.
#include "kernels_impl.h"

namespace bitnet_ext::cpu {

const KernelTable& table_neon_dot() {
  return table_scalar();
}

} // namespace bitnet_ext::cpu
