// The registry of registry.h (filled before main by the static registrations
// of the generated and hand-written kernel translation units).
#include "registry.h"

#include "kernel_record.h"

namespace bnc {

void register_kernel(const char* name, const char* file, const void* entry, std::vector<int> params) {
  bnh::KernelRegistry<KernelInfo>::add({name, file, entry, std::move(params)});
}

const std::vector<KernelInfo>& kernels() {
  return bnh::KernelRegistry<KernelInfo>::all();
}

const KernelInfo* find_kernel(const std::string& name) {
  return bnh::KernelRegistry<KernelInfo>::find(name);
}

} // namespace bnc
