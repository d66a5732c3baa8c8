// Portable scalar kernels: the fallback on every CPU and the oracle of the
// C++ tests. Compiled without any ISA flags.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "kernels_impl.h"
#include "thread_pool.h"

namespace bitnet_ext::cpu {
namespace {

inline int code_at(const uint32_t* row, int64_t k) {
  return static_cast<int>((row[k >> 4] >> (2 * (k & 15))) & 3u);
}

// Rows of output per parallel chunk, so a chunk does at least ~64K weights.
inline int64_t grain_rows(int64_t K, int64_t M = 1) {
  const int64_t work = std::max<int64_t>(1, K * std::max<int64_t>(M, 1));
  return std::max<int64_t>(1, (int64_t{1} << 16) / work);
}

void matmul_t(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale, float* y,
              int64_t M, int64_t N, int64_t K) {
  const int64_t KW = K / 16;
  parallel_for(0, N, grain_rows(K, M), [&](int64_t n0, int64_t n1) {
    std::vector<float> wrow(static_cast<size_t>(K));
    for (int64_t n = n0; n < n1; ++n) {
      const uint32_t* row = wq + n * KW;
      for (int64_t k = 0; k < K; ++k) wrow[k] = static_cast<float>(code_at(row, k) - 1);
      const float s = row_scale(scale, per_row_scale, n);
      for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * ldx;
        float acc = 0.0f;
        for (int64_t k = 0; k < K; ++k) acc += xr[k] * wrow[k];
        y[m * N + n] = s * acc;
      }
    }
  });
}

void matmul_n(const float* x, int64_t ldx, const uint32_t* wq, const float* scale, bool per_row_scale, float* y,
              int64_t M, int64_t N, int64_t K) {
  const int64_t KW = K / 16;
  // Split the output columns (in units of 16 = one packed word).
  parallel_for(0, KW, std::max<int64_t>(1, grain_rows(N * 16, M)), [&](int64_t w0, int64_t w1) {
    const int64_t k0 = w0 * 16, k1 = w1 * 16;
    for (int64_t m = 0; m < M; ++m) {
      float* yr = y + m * K;
      for (int64_t k = k0; k < k1; ++k) yr[k] = 0.0f;
      const float* xr = x + m * ldx;
      for (int64_t n = 0; n < N; ++n) {
        const float a = xr[n] * row_scale(scale, per_row_scale, n);
        const uint32_t* row = wq + n * KW;
        for (int64_t k = k0; k < k1; ++k) yr[k] += a * static_cast<float>(code_at(row, k) - 1);
      }
    }
  });
}

void absmax_quantize_scalar(const float* x, int64_t ldx, float eps, int8_t* xq, float* xscale, int64_t M, int64_t K,
                            ActRounding rounding) {
  const bool mul = rounding == ActRounding::Transformers;
  parallel_for(0, M, grain_rows(K), [&](int64_t m0, int64_t m1) {
    for (int64_t m = m0; m < m1; ++m) {
      const float* xr = x + m * ldx;
      uint32_t amax = 0; // bits of max |x|: NaN if any x is NaN
      for (int64_t k = 0; k < K; ++k) amax = std::max(amax, abs_bits(xr[k]));
      const float a = max_nan(float_from_bits(amax), eps);
      const float s = a / 127.0f;
      xscale[m] = s;
      absmax_quantize_row_exact(xr, s, (1.0f / a) * 127.0f, mul, xq + m * K, K);
    }
  });
}

void matmul_i8(const I8Args& a) {
  const int64_t K = a.K, N = a.N, M = a.M, KW = K / 16;
  parallel_for(0, N, grain_rows(K, M), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint32_t* row = wq_row(a.wq, n, KW);
      for (int64_t m = 0; m < M; ++m) {
        const int8_t* xr = a.xq + m * K;
        int32_t acc = 0;
        for (int64_t k = 0; k < K; ++k) acc += static_cast<int32_t>(xr[k]) * (code_at(row, k) - 1);
        if (a.y) {
          a.y[m * N + n] = bitlinear_epilogue(acc, a.xscale[m], row_scale(a.scale, a.per_row_scale, n), a.bias, n);
        } else {
          a.acc[m * N + n] = acc;
        }
      }
    }
  });
}

} // namespace

// ---------------------------------------------------------------------------
// Shared by every level (declared in kernels_impl.h): not performance critical
// and with exact semantics that are simplest to keep in one place.

void absmax_quantize_row_exact(const float* xr, float s, float inv, bool mul, int8_t* q, int64_t K) {
  for (int64_t k = 0; k < K; ++k) {
    q[k] = static_cast<int8_t>(quantize_code(mul ? xr[k] * inv : xr[k] / s, -128.0f, 127.0f));
  }
}

void absmean_quantize_generic(const float* w, float eps, bool per_row_scale, uint32_t* wq, float* scale, int64_t N,
                              int64_t K) {
  const int64_t KW = K / 16;
  std::vector<double> sums(static_cast<size_t>(N));
  parallel_for(0, N, grain_rows(K), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float* r = w + n * K;
      double s = 0.0;
      for (int64_t k = 0; k < K; ++k) s += std::fabs(static_cast<double>(r[k]));
      sums[n] = s;
    }
  });
  if (per_row_scale) {
    for (int64_t n = 0; n < N; ++n) {
      const float mean = K > 0 ? static_cast<float>(sums[n] / static_cast<double>(K)) : 0.0f;
      scale[n] = max_nan(mean, eps); // a NaN or inf weight gives a NaN or inf scale
    }
  } else {
    double total = 0.0;
    for (int64_t n = 0; n < N; ++n) total += sums[n];
    const double count = static_cast<double>(N) * static_cast<double>(K);
    const float mean = count > 0 ? static_cast<float>(total / count) : 0.0f;
    scale[0] = max_nan(mean, eps);
  }
  parallel_for(0, N, grain_rows(K), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const float s = row_scale(scale, per_row_scale, n);
      const float* r = w + n * K;
      uint32_t* out = wq + n * KW;
      for (int64_t j = 0; j < KW; ++j) {
        uint32_t word = 0;
        for (int i = 0; i < 16; ++i) {
          const int c = quantize_code(r[j * 16 + i] / s, -1.0f, 1.0f); // NaN (w / NaN, inf / inf): 0
          word |= static_cast<uint32_t>(c + 1) << (2 * i);
        }
        out[j] = word;
      }
    }
  });
}

bool pack_ternary_generic(const int8_t* w, uint32_t* wq, int64_t N, int64_t K) {
  const int64_t KW = K / 16;
  std::atomic<bool> ok{true};
  parallel_for(0, N, grain_rows(K), [&](int64_t n0, int64_t n1) {
    bool good = true;
    for (int64_t n = n0; n < n1; ++n) {
      const int8_t* r = w + n * K;
      uint32_t* out = wq + n * KW;
      for (int64_t j = 0; j < KW; ++j) {
        uint32_t word = 0;
        for (int i = 0; i < 16; ++i) {
          const int v = r[j * 16 + i];
          good &= (v >= -1 && v <= 1);
          word |= static_cast<uint32_t>((v + 1) & 3) << (2 * i);
        }
        out[j] = word;
      }
    }
    if (!good) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

void unpack_ternary_generic(const uint32_t* wq, int8_t* w, int64_t N, int64_t K) {
  const int64_t KW = K / 16;
  parallel_for(0, N, grain_rows(K), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint32_t* row = wq + n * KW;
      int8_t* r = w + n * K;
      for (int64_t k = 0; k < K; ++k) r[k] = static_cast<int8_t>(code_at(row, k) - 1);
    }
  });
}

void dequantize_ternary_generic(const uint32_t* wq, const float* scale, bool per_row_scale, float* out, int64_t N,
                                int64_t K) {
  const int64_t KW = K / 16;
  parallel_for(0, N, grain_rows(K), [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) {
      const uint32_t* row = wq + n * KW;
      const float s = row_scale(scale, per_row_scale, n);
      float* r = out + n * K;
      for (int64_t k = 0; k < K; ++k) r[k] = s * static_cast<float>(code_at(row, k) - 1);
    }
  });
}

const KernelTable& table_scalar() {
  static constexpr KernelTable t{
      matmul_t,
      matmul_n,
      absmax_quantize_scalar,
      matmul_i8,
      absmean_quantize_generic,
      pack_ternary_generic,
      unpack_ternary_generic,
      dequantize_ternary_generic,
  };
  return t;
}

} // namespace bitnet_ext::cpu
