// Standalone tests of the CPU kernels (no MLX): every function at every ISA
// level this CPU supports, against the scalar level and an independent naive
// oracle written here. Exit status is non-zero on any failure.
//
//   cmake -S csrc/cpu -B build/cpu && cmake --build build/cpu -j2 && ./build/cpu/test_cpu_kernels
//   (optional argument: --quick to skip the largest shapes)
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "kernels.h"
#include "thread_pool.h"

using namespace bitnet_ext::cpu;

namespace {

std::atomic<int> g_failures{0};
std::atomic<int> g_checks{0};
std::string g_ctx;

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    ++g_checks;                                                            \
    if (!(cond)) {                                                         \
      if (++g_failures <= 50) {                                            \
        std::fprintf(stderr, "FAIL [%s] %s:%d: ", g_ctx.c_str(), __FILE__, \
                     __LINE__);                                            \
        std::fprintf(stderr, __VA_ARGS__);                                 \
        std::fprintf(stderr, "\n");                                        \
      }                                                                    \
    }                                                                      \
  } while (0)

std::mt19937_64 rng(12345);

std::vector<int8_t> random_codes(int64_t n, double p_zero = 1.0 / 3) {
  std::vector<int8_t> w(static_cast<size_t>(n));
  std::uniform_real_distribution<double> u(0, 1);
  for (auto& v : w) {
    double r = u(rng);
    v = r < p_zero ? 0 : (r < p_zero + (1 - p_zero) / 2 ? 1 : -1);
  }
  return w;
}

std::vector<float> random_floats(int64_t n, float scale = 1.0f) {
  std::vector<float> x(static_cast<size_t>(n));
  std::normal_distribution<float> d(0.0f, scale);
  for (auto& v : x) v = d(rng);
  return x;
}

std::vector<int8_t> random_i8(int64_t n) {
  std::vector<int8_t> x(static_cast<size_t>(n));
  std::uniform_int_distribution<int> d(-128, 127);
  for (auto& v : x) v = static_cast<int8_t>(d(rng));
  return x;
}

std::vector<uint32_t> pack_ref(const std::vector<int8_t>& w, int64_t N, int64_t K) {
  std::vector<uint32_t> wq(static_cast<size_t>(N * K / 16), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      wq[n * (K / 16) + k / 16] |= static_cast<uint32_t>(w[n * K + k] + 1) << (2 * (k % 16));
  return wq;
}

// Random uint32 words: every field may hold code 3, which every kernel
// reads as +2 (kernels.h).
std::vector<uint32_t> random_words(int64_t n) {
  std::vector<uint32_t> wq(static_cast<size_t>(n));
  for (auto& v : wq) v = static_cast<uint32_t>(rng());
  return wq;
}

// The weights W[n, k] = code - 1 in {-1, 0, 1, 2} of packed words.
std::vector<int8_t> unpack_ref(const std::vector<uint32_t>& wq, int64_t N, int64_t K) {
  std::vector<int8_t> w(static_cast<size_t>(N * K));
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      w[n * K + k] = static_cast<int8_t>(((wq[n * (K / 16) + k / 16] >> (2 * (k % 16))) & 3u) - 1);
  return w;
}

// Weights for a test: packed ternary codes, or (raw) random words with code 3.
struct Weights {
  std::vector<int8_t> w; // W[n, k]
  std::vector<uint32_t> wq;
};
Weights make_weights(int64_t N, int64_t K, bool raw) {
  if (raw) {
    auto wq = random_words(N * K / 16);
    return {unpack_ref(wq, N, K), wq};
  }
  auto w = random_codes(N * K);
  return {w, pack_ref(w, N, K)};
}

bool same_bits(float a, float b) {
  uint32_t x, y;
  std::memcpy(&x, &a, 4);
  std::memcpy(&y, &b, 4);
  return x == y;
}

// Bit-identical, except that any NaN equals any NaN (payloads may differ).
bool same_value(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || same_bits(a, b);
}

struct Level {
  Isa isa;
  int threads;
  std::string name() const { return std::string(isa_name(isa)) + "/t" + std::to_string(threads); }
};

std::vector<Level> levels() {
  std::vector<Level> out;
  for (int i = 0; i <= 7; ++i) {
    Isa isa = static_cast<Isa>(i);
    if (!isa_supported(isa)) continue;
    for (int t : {1, 2}) out.push_back({isa, t});
  }
  return out;
}

void use(const Level& l) {
  set_isa(l.isa);
  set_num_threads(l.threads);
}

// ---------------------------------------------------------------------------
// Float matmuls: compare against a double oracle with a tolerance scaled by
// sum |x_k w_k s|, and against the scalar level the same way.

void check_float_close(const std::vector<float>& got, const std::vector<double>& ref, const std::vector<double>& mag,
                       int64_t K, const char* what) {
  const double rel = 2e-6 * (1.0 + std::sqrt(static_cast<double>(K)));
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = rel * mag[i] + 1e-30;
    if (!(std::fabs(got[i] - ref[i]) <= tol)) {
      if (bad++ < 3)
        CHECK(false, "%s: index %zu got %.9g want %.9g (tol %.3g)", what, i, got[i], ref[i], tol);
    }
  }
  CHECK(bad == 0, "%s: %d mismatches of %zu", what, bad, got.size());
}

float keep_significant_bits(float v, int bits);

// bf16_x: x exact in bfloat16 (8 significant bits), the activations of a bf16
// model (the avx512_bf16 level's GEMM takes only those).
void test_matmul_t(int64_t M, int64_t N, int64_t K, bool per_row, int64_t pad, bool raw = false, bool bf16_x = false) {
  const int64_t ldx = K + pad;
  auto [w, wq] = make_weights(N, K, raw);
  auto x = random_floats(M * ldx);
  if (bf16_x) {
    for (auto& v : x) v = keep_significant_bits(v, 8);
  }
  auto scale = per_row ? random_floats(N, 0.5f) : std::vector<float>{0.37f};
  std::vector<double> ref(M * N), mag(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0, sc = per_row ? scale[n] : scale[0];
      for (int64_t k = 0; k < K; ++k) {
        s += double(x[m * ldx + k]) * w[n * K + k];
        a += std::fabs(double(x[m * ldx + k]) * w[n * K + k]);
      }
      ref[m * N + n] = s * sc;
      mag[m * N + n] = a * std::fabs(sc);
    }
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "matmul_t " + l.name() + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K) + (per_row ? " per_row" : " per_tensor") + " pad=" + std::to_string(pad) +
            (raw ? " raw words" : "") + (bf16_x ? " bf16 x" : "");
    std::vector<float> y(M * N, std::nanf(""));
    ternary_matmul_t(x.data(), ldx, wq.data(), scale.data(), per_row, y.data(), M, N, K);
    check_float_close(y, ref, mag, K, "y");
  }
}

// v with its significand cut to `bits` significant bits (round toward zero).
float keep_significant_bits(float v, int bits) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  b &= ~((uint32_t{1} << (24 - bits)) - 1u);
  std::memcpy(&v, &b, 4);
  return v;
}

// Rows the AVX2 float GEMV (M <= 2) splits into three int8 planes, whose
// error bound is relative to the row's largest |x|: each weight's share is
// off by at most max|x| * 2^-23.9 (half a float32 ulp of max|x|; the test
// allows 2^-23). kind 0: a wide dynamic range (values spread over 12
// decades, one outlier); 1: a row of zeros; 2: a NaN in row 0 and an inf in
// the last row; 3: rows too small to split (max |x| = 1e-33), which take the
// float decode; 4: subnormals next to normal values; 5: values exact in
// bf16 and 6: in float16 (the AMX GEMM takes one and two bf16 planes).
void test_matmul_t_split_rows(int64_t M, int64_t N, int64_t K, int kind) {
  auto [w, wq] = make_weights(N, K, false);
  std::vector<float> x(static_cast<size_t>(M * K));
  std::uniform_real_distribution<double> e(-12, 0), u(-1, 1);
  for (int64_t i = 0; i < M * K; ++i) {
    switch (kind) {
      case 0: x[i] = static_cast<float>(u(rng) * std::pow(10.0, e(rng))); break;
      case 1: x[i] = 0.0f; break;
      case 3: x[i] = static_cast<float>(u(rng) * 1e-33); break;
      case 4: x[i] = static_cast<float>(u(rng) * ((i % 3) ? 1e-40 : 1.0)); break;
      case 5: x[i] = keep_significant_bits(static_cast<float>(u(rng)), 8); break;
      case 6: x[i] = keep_significant_bits(static_cast<float>(u(rng)), 11); break;
      default: x[i] = static_cast<float>(u(rng));
    }
  }
  if (kind == 0) x[K / 2] = 1e4f;
  if (kind == 2) {
    x[K / 3] = std::nanf("");
    x[(M - 1) * K + 5] = INFINITY;
  }
  const std::vector<float> scale{0.37f};
  std::vector<double> ref(M * N), bound(M * N);
  for (int64_t m = 0; m < M; ++m) {
    double amax = 0;
    for (int64_t k = 0; k < K; ++k) amax = std::max(amax, std::fabs(double(x[m * K + k])));
    for (int64_t n = 0; n < N; ++n) {
      double s = 0, a = 0, wsum = 0;
      for (int64_t k = 0; k < K; ++k) {
        s += double(x[m * K + k]) * w[n * K + k];
        a += std::fabs(double(x[m * K + k]) * w[n * K + k]);
        wsum += std::abs(w[n * K + k]);
      }
      ref[m * N + n] = s * scale[0];
      bound[m * N + n] = (wsum * amax * std::ldexp(1.0, -23) + 1e-6 * a) * scale[0] + 1e-37;
    }
  }
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "matmul_t split rows " + l.name() + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K) + " kind=" + std::to_string(kind);
    std::vector<float> y(M * N, std::nanf(""));
    ternary_matmul_t(x.data(), K, wq.data(), scale.data(), false, y.data(), M, N, K);
    int bad = 0;
    for (int64_t i = 0; i < M * N; ++i) {
      const bool ok = std::isfinite(ref[i]) ? std::fabs(y[i] - ref[i]) <= bound[i]
                                            : (std::isnan(ref[i]) ? std::isnan(y[i]) || std::isinf(y[i]) : !std::isfinite(y[i]));
      if (!ok && bad++ < 3) CHECK(false, "index %lld got %.9g want %.9g (bound %.3g)", (long long)i, y[i], ref[i], bound[i]);
    }
    CHECK(bad == 0, "%d mismatches", bad);
  }
}

void test_matmul_n(int64_t M, int64_t N, int64_t K, bool per_row, int64_t pad, bool raw = false) {
  const int64_t ldx = N + pad;
  auto [w, wq] = make_weights(N, K, raw);
  auto x = random_floats(M * ldx);
  auto scale = per_row ? random_floats(N, 0.5f) : std::vector<float>{0.37f};
  std::vector<double> ref(M * K, 0.0), mag(M * K, 0.0);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      const double a = double(x[m * ldx + n]) * (per_row ? scale[n] : scale[0]);
      for (int64_t k = 0; k < K; ++k) {
        ref[m * K + k] += a * w[n * K + k];
        mag[m * K + k] += std::fabs(a * w[n * K + k]);
      }
    }
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "matmul_n " + l.name() + " M=" + std::to_string(M) + " N=" + std::to_string(N) +
            " K=" + std::to_string(K) + (per_row ? " per_row" : " per_tensor") + " pad=" + std::to_string(pad) +
            (raw ? " raw words" : "");
    std::vector<float> y(M * K, std::nanf(""));
    ternary_matmul_n(x.data(), ldx, wq.data(), scale.data(), per_row, y.data(), M, N, K);
    check_float_close(y, ref, mag, N, "y");
  }
}

// ---------------------------------------------------------------------------
// Int8 path: bit-exact against the oracle.

// raw: random words (code 3 = +2). Rows of xscale that are NaN or inf (as
// absmax_quantize gives for such rows of x) must give NaN or +-inf outputs.
void test_i8(int64_t M, int64_t N, int64_t K, bool per_row, bool with_bias, bool raw = false) {
  auto [w, wq] = make_weights(N, K, raw);
  auto xq = random_i8(M * K);
  std::vector<float> xscale = random_floats(M, 0.01f);
  for (auto& v : xscale) v = std::fabs(v) + 1e-4f;
  if (M > 2) {
    xscale[1] = std::nanf("");
    xscale[M - 1] = INFINITY;
  }
  auto scale = per_row ? random_floats(N, 0.5f) : std::vector<float>{0.37f};
  auto bias = random_floats(N);
  std::vector<int32_t> ref(M * N);
  std::vector<float> yref(M * N);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int64_t(xq[m * K + k]) * w[n * K + k];
      ref[m * N + n] = static_cast<int32_t>(s);
      volatile float v = static_cast<float>(static_cast<int32_t>(s)) * xscale[m];
      volatile float v2 = v * (per_row ? scale[n] : scale[0]);
      yref[m * N + n] = with_bias ? v2 + bias[n] : v2;
    }
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "i8 " + l.name() + " M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
            (per_row ? " per_row" : " per_tensor") + (with_bias ? " bias" : "") + (raw ? " raw words" : "");
    std::vector<int32_t> acc(M * N, 0x7eadbeef);
    ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
    int bad = 0;
    for (int64_t i = 0; i < M * N; ++i)
      if (acc[i] != ref[i] && bad++ < 3) CHECK(false, "acc[%ld] = %d, want %d", long(i), acc[i], ref[i]);
    CHECK(bad == 0, "acc: %d mismatches", bad);
    std::vector<float> y(M * N, std::nanf(""));
    bitlinear(xq.data(), xscale.data(), wq.data(), scale.data(), per_row, with_bias ? bias.data() : nullptr, y.data(),
              M, N, K);
    bad = 0;
    for (int64_t i = 0; i < M * N; ++i)
      if (!same_value(y[i], yref[i]) && bad++ < 3)
        CHECK(false, "bitlinear y[%ld] = %.9g, want %.9g", long(i), y[i], yref[i]);
    CHECK(bad == 0, "bitlinear: %d mismatches", bad);
  }
}

void test_i8_worst_case(int64_t K) {
  const int64_t M = 2, N = 3;
  // Row 0: all +127 against all +1 -> 127*K. Row 1: all -128 against all -1
  // (n=0,1) -> 128*K, and against +1 (n=2)... set W row 2 to +1 as well.
  std::vector<int8_t> w(N * K, 1);
  for (int64_t k = 0; k < K; ++k) w[1 * K + k] = -1;
  std::vector<int8_t> xq(M * K);
  for (int64_t k = 0; k < K; ++k) {
    xq[k] = 127;
    xq[K + k] = -128;
  }
  auto wq = pack_ref(w, N, K);
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "i8 worst case " + l.name() + " K=" + std::to_string(K);
    std::vector<int32_t> acc(M * N, 0);
    ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
    CHECK(acc[0] == 127 * K, "acc[0,0] = %d, want %ld", acc[0], long(127 * K));
    CHECK(acc[1] == -127 * K, "acc[0,1] = %d, want %ld", acc[1], long(-127 * K));
    CHECK(acc[2] == 127 * K, "acc[0,2] = %d", acc[2]);
    CHECK(acc[3] == -128 * K, "acc[1,0] = %d, want %ld", acc[3], long(-128 * K));
    CHECK(acc[4] == 128 * K, "acc[1,1] = %d, want %ld", acc[4], long(128 * K));
    CHECK(acc[5] == -128 * K, "acc[1,2] = %d", acc[5]);
    // Also through bitlinear (with M = 1 so the decode path is taken).
    float xs = 1.0f, s = 1.0f, y = 0;
    bitlinear(xq.data(), &xs, wq.data(), &s, false, nullptr, &y, 1, 1, K);
    CHECK(y == float(127 * K), "bitlinear worst case y = %.9g", y);
  }
}

// Code 3 (+2) everywhere against x = -128 and +127: the largest lanes of the
// int8 GEMV accumulators (the VNNI in-place field 3 is 192 per byte), for M
// on the in-place (1, 2), two-accumulator (3) and GEMM (17) paths.
void test_i8_code3_worst_case(int64_t K) {
  const int64_t N = 5;
  std::vector<uint32_t> wq(N * K / 16, 0xffffffffu);
  for (int64_t M : {1, 2, 3, 17}) {
    std::vector<int8_t> xq(M * K);
    for (int64_t i = 0; i < M * K; ++i) xq[i] = (i / K) % 2 ? 127 : -128;
    for (const auto& l : levels()) {
      use(l);
      g_ctx = "i8 code 3 worst case " + l.name() + " M=" + std::to_string(M) + " K=" + std::to_string(K);
      std::vector<int32_t> acc(M * N, 0);
      ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
      for (int64_t m = 0; m < M; ++m) {
        const int64_t want = 2 * K * (m % 2 ? 127 : -128);
        for (int64_t n = 0; n < N; ++n)
          CHECK(acc[m * N + n] == want, "acc[%ld,%ld] = %d, want %ld", long(m), long(n), acc[m * N + n], long(want));
      }
    }
  }
}

// ---------------------------------------------------------------------------

// The oracle of absmax_quantize (kernels.h), NaN rule included: a row with a
// NaN has xscale NaN; a quotient that is NaN has code 0.
void check_absmax(const std::vector<float>& x, int64_t ldx, int64_t M, int64_t K, const std::string& what) {
  const float eps = 1e-5f;
  std::vector<int8_t> qref(M * K);
  std::vector<float> sref(M);
  for (int64_t m = 0; m < M; ++m) {
    float amax = 0;
    bool nan = false;
    for (int64_t k = 0; k < K; ++k) {
      nan |= std::isnan(x[m * ldx + k]);
      amax = std::max(amax, std::fabs(x[m * ldx + k]));
    }
    volatile float s = nan ? std::nanf("") : std::max(amax, eps) / 127.0f;
    sref[m] = s;
    for (int64_t k = 0; k < K; ++k) {
      volatile float q = x[m * ldx + k] / s;
      float r = std::nearbyint(q);
      r = std::min(127.0f, std::max(-128.0f, r));
      qref[m * K + k] = std::isnan(q) ? 0 : static_cast<int8_t>(r);
    }
  }
  for (const auto& l : levels()) {
    use(l);
    g_ctx = what + " " + l.name() + " M=" + std::to_string(M) + " K=" + std::to_string(K);
    std::vector<int8_t> q(M * K, 99);
    std::vector<float> s(M, -1);
    absmax_quantize(x.data(), ldx, eps, q.data(), s.data(), M, K);
    int bad = 0;
    for (int64_t m = 0; m < M; ++m)
      if (!same_value(s[m], sref[m]) && bad++ < 3) CHECK(false, "xscale[%ld] %.9g want %.9g", long(m), s[m], sref[m]);
    for (int64_t i = 0; i < M * K; ++i)
      if (q[i] != qref[i] && bad++ < 3) CHECK(false, "xq[%ld] %d want %d", long(i), q[i], qref[i]);
    CHECK(bad == 0, "%d mismatches", bad);
  }
}

void test_absmax(int64_t M, int64_t K, int64_t pad) {
  const int64_t ldx = K + pad;
  auto x = random_floats(M * ldx, 3.0f);
  // Special rows: ties (x / xscale = j + 0.5 exactly), zeros, tiny values.
  if (M > 1) {
    // amax 127 -> xscale = 1: x = j + 0.5 are exact ties.
    for (int64_t k = 0; k < K; ++k) x[ldx + k] = static_cast<float>((k % 254) - 127) + 0.5f;
    x[ldx] = 127.0f;
  }
  if (M > 2)
    for (int64_t k = 0; k < K; ++k) x[2 * ldx + k] = 0.0f;
  if (M > 3)
    for (int64_t k = 0; k < K; ++k) x[3 * ldx + k] = 1e-8f * static_cast<float>(k % 7 - 3);
  check_absmax(x, ldx, M, K, "absmax");
}

// One NaN, inf or -inf per row at every position where a kernel changes
// code path: first and last element, both sides of every vector width (4, 8,
// 16 lanes) and of the scalar tail.
void test_absmax_nonfinite(int64_t K) {
  std::vector<int64_t> pos;
  for (int64_t p : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{4}, int64_t{7}, int64_t{8}, int64_t{15},
                    int64_t{16}, int64_t{17}, K / 2, K - 17, K - 16, K - 9, K - 8, K - 5, K - 4, K - 2, K - 1})
    if (p >= 0 && p < K) pos.push_back(p);
  const float specials[] = {std::nanf(""), -std::nanf(""), INFINITY, -INFINITY};
  const int64_t M = static_cast<int64_t>(pos.size()) * 4 + 2, ldx = K + 1;
  auto x = random_floats(M * ldx, 3.0f);
  int64_t m = 0;
  for (float v : specials)
    for (int64_t p : pos) x[(m++) * ldx + p] = v;
  // inf and NaN in one row; and a row of zeros around one inf.
  x[m * ldx] = INFINITY;
  x[m * ldx + K - 1] = std::nanf("");
  ++m;
  for (int64_t k = 0; k < K; ++k) x[m * ldx + k] = 0.0f;
  x[m * ldx + K / 2] = -INFINITY;
  check_absmax(x, ldx, M, K, "absmax non-finite");
}

// nonfinite: row 0 gets a NaN, row 1 an inf, row 2 a -inf (each at a
// different position); with one scale, the NaN makes every code 0.
void test_absmean(int64_t N, int64_t K, bool per_row, bool nonfinite = false) {
  auto w = random_floats(N * K, 0.02f);
  if (nonfinite) {
    const float specials[] = {std::nanf(""), INFINITY, -INFINITY};
    for (int64_t n = 0; n < std::min<int64_t>(N, 3); ++n) w[n * K + (n * 37) % K] = specials[n];
  }
  // Ties: with w = +-1.5 * scale exactly the code must round to even (2 -> clamped 1).
  const float eps = 1e-5f;
  std::vector<float> sref(per_row ? N : 1);
  double total = 0;
  for (int64_t n = 0; n < N; ++n) {
    double rs = 0;
    for (int64_t k = 0; k < K; ++k) rs += std::fabs(double(w[n * K + k]));
    if (per_row) sref[n] = std::isnan(rs) ? float(rs) : std::max(static_cast<float>(rs / double(K)), eps);
    total += rs;
  }
  if (!per_row)
    sref[0] = std::isnan(total) ? float(total) : std::max(static_cast<float>(total / (double(N) * double(K))), eps);
  std::vector<int8_t> cref(N * K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      volatile float q = w[n * K + k] / sref[per_row ? n : 0];
      float r = std::nearbyint(q);
      cref[n * K + k] = std::isnan(q) ? 0 : static_cast<int8_t>(std::min(1.0f, std::max(-1.0f, r)));
    }
  auto wqref = pack_ref(cref, N, K);
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "absmean " + l.name() + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
            (per_row ? " per_row" : " per_tensor") + (nonfinite ? " non-finite" : "");
    std::vector<uint32_t> wq(N * K / 16, 0xffffffffu);
    std::vector<float> s(sref.size(), -1);
    absmean_quantize(w.data(), eps, per_row, wq.data(), s.data(), N, K);
    int bad = 0;
    for (size_t i = 0; i < s.size(); ++i)
      if (!same_value(s[i], sref[i]) && bad++ < 3) CHECK(false, "scale[%zu] %.9g want %.9g", i, s[i], sref[i]);
    for (size_t i = 0; i < wq.size(); ++i)
      if (wq[i] != wqref[i] && bad++ < 3) CHECK(false, "wq[%zu] %08x want %08x", i, wq[i], wqref[i]);
    CHECK(bad == 0, "%d mismatches", bad);
  }
}

void test_pack_unpack_dequant(int64_t N, int64_t K) {
  auto w = random_codes(N * K);
  auto wqref = pack_ref(w, N, K);
  auto scale = random_floats(N, 0.5f);
  for (const auto& l : levels()) {
    use(l);
    g_ctx = "pack/unpack/dequant " + l.name() + " N=" + std::to_string(N) + " K=" + std::to_string(K);
    std::vector<uint32_t> wq(N * K / 16, 0xdeadbeefu);
    CHECK(pack_ternary(w.data(), wq.data(), N, K), "pack returned false");
    CHECK(wq == wqref, "pack mismatch");
    std::vector<int8_t> u(N * K, 42);
    unpack_ternary(wqref.data(), u.data(), N, K);
    CHECK(u == w, "unpack mismatch");
    for (bool per_row : {false, true}) {
      std::vector<float> d(N * K, std::nanf(""));
      dequantize_ternary(wqref.data(), scale.data(), per_row, d.data(), N, K);
      int bad = 0;
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const float want = (per_row ? scale[n] : scale[0]) * static_cast<float>(w[n * K + k]);
          if (!same_bits(d[n * K + k], want) && bad++ < 3)
            CHECK(false, "dequant[%ld,%ld] %.9g want %.9g", long(n), long(k), d[n * K + k], want);
        }
      CHECK(bad == 0, "dequant %d mismatches", bad);
    }
    // Arbitrary words: code 3 unpacks and dequantizes as +2.
    auto raw = random_words(N * K / 16);
    auto wraw = unpack_ref(raw, N, K);
    unpack_ternary(raw.data(), u.data(), N, K);
    CHECK(u == wraw, "unpack of random words mismatch");
    std::vector<float> d(N * K, std::nanf(""));
    dequantize_ternary(raw.data(), scale.data(), true, d.data(), N, K);
    int bad = 0;
    for (int64_t i = 0; i < N * K; ++i)
      if (!same_bits(d[i], scale[i / K] * static_cast<float>(wraw[i])) && bad++ < 3)
        CHECK(false, "dequant of random words [%ld] %.9g", long(i), d[i]);
    for (int bad_value : {2, -2, 127, -128}) {
      auto wb = w;
      wb[(N * K) / 2 + 1 < N * K ? (N * K) / 2 + 1 : 0] = static_cast<int8_t>(bad_value);
      CHECK(!pack_ternary(wb.data(), wq.data(), N, K), "pack accepted %d", bad_value);
    }
  }
}

void test_isa_api() {
  g_ctx = "isa api";
  CHECK(isa_supported(Isa::Scalar), "scalar unsupported");
  CHECK(isa_supported(best_isa()), "best unsupported");
  for (int i = 0; i <= 6; ++i) {
    Isa isa = static_cast<Isa>(i);
    if (isa_supported(isa)) {
      set_isa(isa);
      CHECK(active_isa() == isa, "set_isa(%s) not active", isa_name(isa));
    } else {
      bool threw = false;
      try {
        set_isa(isa);
      } catch (const std::invalid_argument&) {
        threw = true;
      }
      CHECK(threw, "set_isa(%s) did not throw", isa_name(isa));
    }
  }
  reset_isa();
  const char* prev = std::getenv("BITNET_EXT_ISA");
  std::string saved = prev ? prev : "";
  setenv("BITNET_EXT_ISA", "bogus", 1);
  reset_isa();
  bool threw = false;
  try {
    (void)active_isa();
  } catch (const std::invalid_argument& e) {
    threw = std::string(e.what()).find("bogus") != std::string::npos;
  }
  CHECK(threw, "BITNET_EXT_ISA=bogus did not throw a message naming the value");
  setenv("BITNET_EXT_ISA", "scalar", 1);
  reset_isa();
  CHECK(active_isa() == Isa::Scalar, "BITNET_EXT_ISA=scalar ignored");
  if (prev)
    setenv("BITNET_EXT_ISA", saved.c_str(), 1);
  else
    unsetenv("BITNET_EXT_ISA");
  reset_isa();
  CHECK(std::string(isa_name(Isa::Avx512Vnni)) == "avx512_vnni", "isa_name");
  CHECK(std::string(isa_name(Isa::Avx512Amx)) == "avx512_amx", "isa_name");
  CHECK(std::string(isa_name(Isa::Avx512Bf16)) == "avx512_bf16", "isa_name");
}

// Concurrent calls from two threads and re-entrant calls from inside the pool.
void test_threading() {
  g_ctx = "threading";
  reset_isa();
  set_num_threads(2);
  const int64_t M = 3, N = 257, K = 512;
  auto w = random_codes(N * K);
  auto wq = pack_ref(w, N, K);
  auto xq = random_i8(M * K);
  std::vector<int32_t> ref(M * N);
  ternary_matmul_i8(xq.data(), wq.data(), ref.data(), M, N, K);
  std::atomic<int> bad{0};
  auto worker = [&] {
    for (int it = 0; it < 200; ++it) {
      std::vector<int32_t> acc(M * N);
      ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
      if (acc != ref) bad++;
    }
  };
  std::thread a(worker), b(worker);
  a.join();
  b.join();
  CHECK(bad == 0, "concurrent calls gave %d wrong results", bad.load());
  std::atomic<int> bad2{0};
  parallel_for(0, 4, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t i = b0; i < b1; ++i) {
      std::vector<int32_t> acc(M * N);
      ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
      if (acc != ref) bad2++;
    }
  });
  CHECK(bad2 == 0, "re-entrant calls gave %d wrong results", bad2.load());
  std::vector<int> hits(1000, 0);
  parallel_for(0, 1000, 7, [&](int64_t b0, int64_t b1) {
    CHECK((b0 % 7) == 0, "chunk start %ld not a multiple of the grain", long(b0));
    for (int64_t i = b0; i < b1; ++i) hits[i]++;
  });
  bool all_once = true;
  for (int h : hits) all_once &= (h == 1);
  CHECK(all_once, "parallel_for did not cover the range exactly once");
  // An exception thrown by any chunk (on any thread) reaches the caller.
  bool caught = false;
  try {
    parallel_for(0, 64, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i)
        if (i == 63) throw std::runtime_error("chunk failure");
    });
  } catch (const std::runtime_error& e) {
    caught = std::string(e.what()) == "chunk failure";
  }
  CHECK(caught, "exception from a chunk was not rethrown in the caller");
  // The pool still works afterwards.
  std::vector<int32_t> acc(M * N);
  ternary_matmul_i8(xq.data(), wq.data(), acc.data(), M, N, K);
  CHECK(acc == ref, "pool broken after an exception");
}

} // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  std::printf("levels:");
  for (const auto& l : levels()) std::printf(" %s", l.name().c_str());
  std::printf("\n");

  test_isa_api();
  test_threading();

  // Small shapes: every M in 1..9 and around the blocking boundaries.
  const int64_t Ks[] = {16, 32, 48, 64, 80, 112, 128, 144, 240, 256, 272, 496, 512, 528, 1008, 1040};
  const int64_t Ns[] = {1, 2, 3, 7, 16, 17, 31, 33};
  for (int64_t M : {1, 2, 3, 4, 5, 6, 7, 8, 9}) {
    for (int64_t K : Ks) {
      const int64_t N = Ns[(M + K / 16) % 8];
      test_i8(M, N, K, (K / 16) % 2 == 0, M % 2 == 1);
      test_matmul_t(M, N, K, (K / 16) % 2 == 1, (M % 3) * 5);
      test_matmul_n(M, N, K, M % 2 == 0, (K / 16) % 3);
    }
  }
  for (int64_t M : {10, 15, 16, 17, 31, 32, 33, 47, 64, 65, 100}) {
    for (int64_t K : {16, 48, 272, 1040}) {
      const int64_t N = Ns[(M + K / 16) % 8] + 29;
      test_i8(M, N, K, M % 2 == 0, K % 32 == 0);
      test_matmul_t(M, N, K, M % 2 == 1, 3);
      test_matmul_n(M, N, K, M % 2 == 0, 1);
    }
  }
  // Realistic K and many rows (exercises the thread split and wide N).
  test_i8(1, 67, 6912, true, true);
  test_i8(4, 45, 6912, false, false);
  test_matmul_t(1, 67, 6912, true, 0);
  test_matmul_t(3, 45, 2560, false, 16);
  test_matmul_n(1, 67, 2560, true, 0);
  test_matmul_n(2, 301, 160, false, 0);
  // The int8 GEMV cuts K into equal chunks once M x K bytes of activations
  // pass its budget (48 KiB): two and three chunks, with a tail block.
  test_i8(8, 45, 6912 + 16 * 3, true, false);
  test_i8(7, 33, 16384 + 16, false, true);
  test_matmul_t(8, 45, 6912 + 16 * 3, false, 0);
  if (!quick) {
    test_i8(130, 75, 2560, true, true);
    test_matmul_t(130, 75, 2560, true, 0);
    test_matmul_n(70, 50, 1024, true, 0);
    test_i8(1, 1031, 256, false, true);
    test_matmul_t(1, 1031, 256, false, 0);
  }
  // Random words (code 3 = +2) on every path: GEMV (M <= 16, with the
  // AVX-512 M = 1 pair lookups and the VNNI in-place masks), GEMM, tails.
  for (int64_t M : {1, 2, 3, 5, 8, 9, 16, 17, 40}) {
    for (int64_t K : {16, 48, 256, 272, 1040}) {
      const int64_t N = Ns[(M + K / 16) % 8] + 16;
      test_i8(M, N, K, M % 2 == 0, M % 3 == 0, true);
      test_matmul_t(M, N, K, M % 2 == 1, M % 3, true);
      test_matmul_n(M, N, K, M % 2 == 0, 1, true);
    }
  }
  test_i8(1, 37, 6912 + 16 * 3, true, true, true);
  test_matmul_t(1, 37, 6912 + 16 * 3, true, 0, true);
  // Rows the split float GEMV (M <= 2 on AVX2) must handle or hand back.
  // The same rows through the GEMMs (M > 16: on avx512_amx, bf16 planes; on
  // avx512_bf16, vdpbf16ps for kind 5 and the float GEMM for the others).
  for (int64_t M : {1, 2, 3, 20, 40}) {
    for (int kind = 0; kind < 7; ++kind) test_matmul_t_split_rows(M, 37, kind == 0 ? 2560 : 272, kind);
  }
  // bf16-exact rows at more tile edges: x tiles of 32 rows, W tiles of 14, K tails of 16.
  test_matmul_t_split_rows(33, 15, 16, 5);
  test_matmul_t_split_rows(64, 28, 48, 5);
  test_matmul_t_split_rows(17, 29, 2560 + 16, 5);
  if (!quick) test_matmul_t_split_rows(130, 75, 2560, 5);
  // bf16-exact x with row strides past K (aligned and not), per-row scales, code 3 words.
  test_matmul_t(40, 45, 272, true, 16, false, true);
  test_matmul_t(33, 17, 2560 + 16, false, 5, true, true);
  // Exact int32 accumulation at the worst case.
  test_i8_worst_case(16384);
  test_i8_worst_case(16384 + 16 * 3);
  if (!quick) test_i8_worst_case(65536);
  // More than one flush of the decode accumulators (kFlushBlocks blocks of 256 weights) plus a tail.
  if (!quick) test_i8_worst_case(2048 * 256 + 16 * 5);
  test_i8_code3_worst_case(16384 + 16 * 3);
  if (!quick) test_i8_code3_worst_case(2048 * 256 + 16 * 5);

  for (int64_t M : {1, 2, 5, 9}) {
    for (int64_t K : {1, 15, 16, 17, 64, 100, 1000, 2560}) test_absmax(M, K, M % 2 ? 0 : 3);
  }
  for (int64_t K : {1, 5, 16, 33, 64, 100, 1000}) test_absmax_nonfinite(K);
  for (int64_t N : {1, 3, 17}) {
    for (int64_t K : {16, 48, 272, 2560}) {
      test_absmean(N, K, false);
      test_absmean(N, K, true);
      test_absmean(N, K, false, true);
      test_absmean(N, K, true, true);
      test_pack_unpack_dequant(N, K);
    }
  }

  reset_isa();
  std::printf("%d checks, %d failures\n", g_checks.load(), g_failures.load());
  return g_failures == 0 ? 0 : 1;
}
