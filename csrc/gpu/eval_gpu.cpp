// GPU evaluation of the primitives in builds without bitnet_ext's GPU kernels.
//
// Such a build has no GPU kernels: the ops never place a node on a GPU stream
// (see device_fallback.h), so reaching these is a bug or a hand-built graph.
// Metal builds (cmake/metal.cmake defines BITNET_EXT_METAL) and CUDA builds
// (cmake/cuda.cmake defines BITNET_EXT_CUDA) compile this file to nothing and
// use csrc/gpu/metal/eval_gpu_metal.cpp or csrc/gpu/cuda/eval_gpu_cuda.cpp.
#if !defined(BITNET_EXT_METAL) && !defined(BITNET_EXT_CUDA)

#include <stdexcept>
#include <string>

#include "primitives/bitlinear.h"
#include "primitives/packing.h"
#include "primitives/quantize.h"
#include "primitives/ternary_matmul.h"

namespace bitnet_ext {

namespace {

[[noreturn]] void no_gpu_kernels(const char* name) {
  throw std::runtime_error(
      std::string("bitnet_ext: ") + name +
      " has no GPU kernels in this build; run it on the CPU (stream=mx.cpu).");
}

} // namespace

void TernaryMatmul::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  no_gpu_kernels(name());
}
void BitLinear::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  no_gpu_kernels(name());
}
void TernaryPack::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  no_gpu_kernels(name());
}
void TernaryUnpack::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  no_gpu_kernels(name());
}
void TernaryDequantize::eval_gpu(const std::vector<mx::array>&, mx::array&) {
  no_gpu_kernels(name());
}
void AbsmeanQuantize::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  no_gpu_kernels(name());
}
void AbsmaxQuantize::eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) {
  no_gpu_kernels(name());
}

} // namespace bitnet_ext

#endif // !BITNET_EXT_METAL && !BITNET_EXT_CUDA
