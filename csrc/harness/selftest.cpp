// bnh_selftest: runs every launch plan of csrc/gpu/launch_plan.h on the CPU
// harness over a set of shapes, under forward, reverse and shuffled fiber
// orders, and requires bitwise-equal outputs across orders. No Python, so it
// runs under ASan/UBSan (tests/harness/run_sanitizers.sh): an out-of-bounds
// access in a shader is reported with its .metal line. Correctness against
// the reference is tests/test_metal_harness.py's job.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "executor.h"

namespace gpu = bitnet_ext::gpu;

namespace {

std::mt19937 rng(1234);

// float -> IEEE binary16 bits, round to nearest even (normal range; the test
// data is standard normal, so no overflow; tiny values flush to zero).
uint16_t half_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u;
  int32_t exp = int32_t((u >> 23) & 0xFF) - 127 + 15;
  uint32_t mant = u & 0x7FFFFFu;
  if (exp <= 0) {
    return uint16_t(sign);
  }
  uint32_t h = (uint32_t(exp) << 10) | (mant >> 13);
  uint32_t rest = mant & 0x1FFFu;
  if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) {
    ++h;
  }
  return uint16_t(sign | h);
}

// Uniform in [lo, hi) from integer operations only (std's real distributions
// go through long double, which differs between x86-64 and arm64, and the
// output digest must not).
float uniform(float lo, float hi) {
  return lo + (hi - lo) * float(rng() >> 8) * (1.0f / 16777216.0f);
}

std::vector<unsigned char> random_floats(size_t n, gpu::Dtype d) {
  std::vector<unsigned char> b(n * gpu::dtype_size(d));
  for (size_t i = 0; i < n; ++i) {
    float f = uniform(-2.0f, 2.0f);
    if (d == gpu::Dtype::float32) {
      std::memcpy(b.data() + 4 * i, &f, 4);
    } else if (d == gpu::Dtype::float16) {
      uint16_t h = half_bits(f);
      std::memcpy(b.data() + 2 * i, &h, 2);
    } else {
      uint32_t u;
      std::memcpy(&u, &f, 4);
      uint16_t bf = uint16_t(u >> 16);
      std::memcpy(b.data() + 2 * i, &bf, 2);
    }
  }
  return b;
}

std::vector<unsigned char> random_words(size_t n) {
  std::vector<unsigned char> b(n * 4);
  std::uniform_int_distribution<int> code(0, 2);
  for (size_t i = 0; i < n; ++i) {
    uint32_t w = 0;
    for (int j = 0; j < 16; ++j) {
      w |= uint32_t(code(rng)) << (2 * j);
    }
    std::memcpy(b.data() + 4 * i, &w, 4);
  }
  return b;
}

std::vector<unsigned char> random_codes(size_t n) {
  std::vector<unsigned char> b(n);
  std::uniform_int_distribution<int> code(-1, 1);
  for (auto& c : b) {
    c = static_cast<unsigned char>(static_cast<int8_t>(code(rng)));
  }
  return b;
}

std::vector<unsigned char> positive_floats(size_t n) {
  std::vector<unsigned char> b(n * 4);
  for (size_t i = 0; i < n; ++i) {
    float f = uniform(0.05f, 1.5f);
    std::memcpy(b.data() + 4 * i, &f, 4);
  }
  return b;
}

int failures = 0;
int cases = 0;
uint64_t digest = 1469598103934665603ull; // FNV-1a over every output

void hash_bytes(const std::vector<unsigned char>& b) {
  for (unsigned char c : b) {
    digest = (digest ^ c) * 1099511628211ull;
  }
}

// Runs `plan` under the three orders; outputs must be bitwise equal.
void run_case(
    const std::string& what,
    const gpu::LaunchPlan& plan,
    std::vector<std::vector<unsigned char>> inputs,
    const std::vector<size_t>& output_bytes) {
  ++cases;
  std::vector<std::vector<unsigned char>> first;
  const bnh::Order orders[] = {bnh::Order::Forward, bnh::Order::Reverse, bnh::Order::Shuffled};
  for (bnh::Order order : orders) {
    std::vector<bnh::HostBuffer> in, out;
    for (auto& i : inputs) {
      in.push_back({i.data(), i.size()});
    }
    std::vector<std::vector<unsigned char>> outs;
    for (size_t b : output_bytes) {
      outs.emplace_back(b);
    }
    for (auto& o : outs) {
      out.push_back({o.data(), o.size()});
    }
    bnh::LaunchOptions opt;
    opt.order = order;
    opt.seed = 7;
    try {
      bnh::execute_plan(plan, in, out, opt);
    } catch (const std::exception& e) {
      std::printf("FAIL %s: %s\n", what.c_str(), e.what());
      ++failures;
      return;
    }
    if (first.empty()) {
      first = outs;
      uint64_t before = digest;
      for (const auto& o : outs) {
        hash_bytes(o);
      }
      if (std::getenv("BNH_SELFTEST_VERBOSE")) {
        std::printf("%s %016llx\n", what.c_str(), static_cast<unsigned long long>(digest ^ before));
      }
    } else if (outs != first) {
      std::printf("FAIL %s: outputs differ between fiber orders (a race)\n", what.c_str());
      ++failures;
      return;
    }
  }
}

} // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::string(argv[1]) == "--quick";
  const gpu::Dtype dtypes[] = {gpu::Dtype::float32, gpu::Dtype::float16, gpu::Dtype::bfloat16};
  struct Shape {
    int64_t M, N, K;
  };
  std::vector<Shape> shapes = {{1, 9, 16}, {1, 33, 2064}, {3, 17, 48}, {8, 5, 6912}, {13, 20, 2048}, {40, 35, 80}};
  if (quick) {
    shapes = {{1, 9, 16}, {3, 17, 48}, {40, 35, 80}};
  }
  for (gpu::Dtype d : dtypes) {
    size_t es = gpu::dtype_size(d);
    for (auto s : shapes) {
      for (bool transpose : {true, false}) {
        for (bool per_row : {false, true}) {
          int64_t xin = transpose ? s.K : s.N, xout = transpose ? s.N : s.K;
          auto plan = gpu::plan_ternary_matmul(s.M, s.N, s.K, d, transpose, per_row);
          run_case("ternary_matmul " + std::string(gpu::dtype_name(d)), plan,
                   {random_floats(s.M * xin, d), random_words(s.N * s.K / 16), positive_floats(per_row ? s.N : 1)},
                   {size_t(s.M * xout) * es});
        }
      }
    }
  }
  struct Shape2 {
    int64_t N, K;
  };
  std::vector<Shape2> wshapes = {{1, 16}, {7, 48}, {33, 2064}, {3, 6912}};
  if (quick) {
    wshapes = {{1, 16}, {7, 48}};
  }
  for (gpu::Dtype d : dtypes) {
    size_t es = gpu::dtype_size(d);
    for (auto s : shapes) {
      run_case("absmax_quantize " + std::string(gpu::dtype_name(d)), gpu::plan_absmax_quantize(s.M, s.K, d, 1e-5f),
               {random_floats(s.M * s.K, d)}, {size_t(s.M * s.K), size_t(s.M) * 4});
      for (bool bias : {false, true}) {
        auto plan = gpu::plan_bitlinear(s.M, s.N, s.K, d, bias, bias);
        std::vector<std::vector<unsigned char>> in = {random_floats(s.M * s.K, d), random_words(s.N * s.K / 16),
                                                      positive_floats(bias ? s.N : 1)};
        if (bias) {
          in.push_back(random_floats(s.N, gpu::Dtype::float32));
        }
        run_case("bitlinear " + std::string(gpu::dtype_name(d)), plan, in, {size_t(s.M * s.N) * es});
      }
    }
    for (auto w : wshapes) {
      for (bool per_row : {false, true}) {
        run_case("absmean_quantize " + std::string(gpu::dtype_name(d)),
                 gpu::plan_absmean_quantize(w.N, w.K, d, per_row, 1e-5f), {random_floats(w.N * w.K, d)},
                 {size_t(w.N * w.K / 16) * 4, size_t(per_row ? w.N : 1) * 4});
        run_case("dequantize " + std::string(gpu::dtype_name(d)), gpu::plan_dequantize(w.N, w.K, d, per_row),
                 {random_words(w.N * w.K / 16), positive_floats(per_row ? w.N : 1)}, {size_t(w.N * w.K) * es});
      }
    }
  }
  for (auto w : wshapes) {
    run_case("pack", gpu::plan_pack(w.N, w.K), {random_codes(w.N * w.K)}, {size_t(w.N * w.K / 16) * 4});
    run_case("unpack", gpu::plan_unpack(w.N, w.K), {random_words(w.N * w.K / 16)}, {size_t(w.N * w.K)});
  }
  // The digest of all outputs is the same on every platform the harness
  // runs on (x86-64, arm64 under qemu): compare it across builds.
  std::printf("bnh_selftest: %d cases, %d failures, output digest %016llx\n", cases, failures,
              static_cast<unsigned long long>(digest));
  return failures ? 1 : 0;
}
