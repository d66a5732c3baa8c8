// The public functions of kernels.h: pick the active level's table.
#include "kernels.h"
#include "kernels_impl.h"

namespace bitnet_ext::cpu {

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
#if defined(BITNET_EXT_HAVE_X86_KERNELS)
    case Isa::Avx2:
    case Isa::Avx512:
    case Isa::Avx512Vnni:
      return true;
#endif
#if defined(BITNET_EXT_HAVE_AMX_KERNELS)
    case Isa::Avx512Amx:
      return true;
#endif
#if defined(BITNET_EXT_HAVE_BF16_KERNELS)
    case Isa::Avx512Bf16:
      return true;
#endif
#if defined(BITNET_EXT_HAVE_ARM_KERNELS)
    case Isa::Neon:
    case Isa::NeonDot:
      return true;
#endif
    default:
      return false;
  }
}

const KernelTable* kernel_table(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return &table_scalar();
#if defined(BITNET_EXT_HAVE_X86_KERNELS)
    case Isa::Avx2:
      return &table_avx2();
    case Isa::Avx512:
      return &table_avx512();
    case Isa::Avx512Vnni:
      return &table_avx512_vnni();
#endif
#if defined(BITNET_EXT_HAVE_AMX_KERNELS)
    case Isa::Avx512Amx:
      return &table_avx512_amx();
#endif
#if defined(BITNET_EXT_HAVE_BF16_KERNELS)
    case Isa::Avx512Bf16:
      return &table_avx512_bf16();
#endif
#if defined(BITNET_EXT_HAVE_ARM_KERNELS)
    case Isa::Neon:
      return &table_neon();
    case Isa::NeonDot:
      return &table_neon_dot();
#endif
    default:
      return nullptr;
  }
}

namespace {
const KernelTable& active() {
  return *kernel_table(active_isa());
}
} // namespace

void ternary_matmul_t(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale,
                      float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  active().matmul_t(x, ldx, wq, scale, per_row_scale, y, M, N, K);
}

void ternary_matmul_n(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale,
                      float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || K <= 0) return;
  active().matmul_n(x, ldx, wq, scale, per_row_scale, y, M, N, K);
}

void absmax_quantize(const float* x, int64_t ldx, float eps, int8_t* xq, float* xscale, int64_t M, int64_t K,
                     ActRounding rounding) {
  if (M <= 0) return;
  active().absmax_quantize(x, ldx, eps, xq, xscale, M, K, rounding);
}

void ternary_matmul_i8(const int8_t* xq, const uint32_t* wq, int32_t* acc, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  I8Args a{xq, nullptr, wq, nullptr, false, nullptr, acc, nullptr, M, N, K};
  active().matmul_i8(a);
}

void bitlinear(const int8_t* xq, const float* xscale, const uint32_t* wq, const float* scale, bool per_row_scale,
               const float* bias, float* y, int64_t M, int64_t N, int64_t K) {
  if (M <= 0 || N <= 0) return;
  I8Args a{xq, xscale, wq, scale, per_row_scale, bias, nullptr, y, M, N, K};
  active().matmul_i8(a);
}

void absmean_quantize(const float* w, float eps, bool per_row_scale, uint32_t* wq, float* scale, int64_t N,
                      int64_t K) {
  if (N <= 0) {
    if (!per_row_scale && scale) scale[0] = eps > 0.0f ? eps : 0.0f;
    return;
  }
  active().absmean_quantize(w, eps, per_row_scale, wq, scale, N, K);
}

bool pack_ternary(const int8_t* w, uint32_t* wq, int64_t N, int64_t K) {
  if (N <= 0 || K <= 0) return true;
  return active().pack_ternary(w, wq, N, K);
}

void unpack_ternary(const uint32_t* wq, int8_t* w, int64_t N, int64_t K) {
  if (N <= 0 || K <= 0) return;
  active().unpack_ternary(wq, w, N, K);
}

void dequantize_ternary(const uint32_t* wq, const float* scale, bool per_row_scale, float* out, int64_t N,
                        int64_t K) {
  if (N <= 0 || K <= 0) return;
  active().dequantize_ternary(wq, scale, per_row_scale, out, N, K);
}

} // namespace bitnet_ext::cpu
