// Prints every kernel host name the launch plans (csrc/gpu/launch_plan.h) can
// produce, one per line. The macOS workflow compares them with the functions
// in the built metallib.
//   c++ -std=c++17 -Icsrc .github/scripts/plan_names.cpp csrc/gpu/launch_plan.cpp -o plan_names
#include <cstdio>

#include "gpu/launch_plan.h"

int main() {
  for (const auto& n : bitnet_ext::gpu::all_kernel_names()) {
    std::printf("%s\n", n.c_str());
  }
  return 0;
}
