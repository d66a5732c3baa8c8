#include "primitives/bf16_rows.h"

// One copy per vector width where the toolchain can pick at load time (ELF
// ifuncs; the x86-64-v3/v4 names need GCC >= 11, target_clones Clang >= 14);
// elsewhere the baseline build only.
#if defined(__x86_64__) && defined(__ELF__) && \
    ((defined(__clang__) && __clang_major__ >= 14) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define BITNET_ROW_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define BITNET_ROW_CLONES
#endif

namespace bitnet_ext {

BITNET_ROW_CLONES void bf16_to_float_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
}

BITNET_ROW_CLONES void float_to_bf16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

BITNET_ROW_CLONES float bf16_sum_squares_row(const uint16_t* x, int64_t n) {
  float part[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int l = 0; l < 8; ++l) {
      const float v = bf16_to_float(x[j + l]);
      part[l] += v * v;
    }
  }
  float ss = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  for (; j < n; ++j) {
    const float v = bf16_to_float(x[j]);
    ss += v * v;
  }
  return ss;
}

BITNET_ROW_CLONES void bf16_scale_row(const uint16_t* x, const uint16_t* w, float inv_rms, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const uint16_t normalized = float_to_bf16(bf16_to_float(x[i]) * inv_rms);
    y[i] = float_to_bf16(bf16_to_float(normalized) * bf16_to_float(w[i]));
  }
}

BITNET_ROW_CLONES void bf16_rope_row(const uint16_t* x, const float* angle, uint16_t* y, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = bf16_to_float(x[i]), x2 = bf16_to_float(x[i + half]);
    const float c = angle[2 * i], s = angle[2 * i + 1];
    y[i] = float_to_bf16(x1 * c - x2 * s);
    y[i + half] = float_to_bf16(x1 * s + x2 * c);
  }
}

BITNET_ROW_CLONES void bf16_relu2_mul_row(const uint16_t* g, const uint16_t* u, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_relu2_mul(g[i], u[i]);
}

} // namespace bitnet_ext
