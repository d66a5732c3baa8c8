// Timing driver for the CPU kernels (not a test). Usage:
//   bench_cpu_kernels [--cold] [--threads 1,2] [--ms 1,8,128,512] [--op all|bitlinear|i8|tmm|tmm_bf16|tmm_n|absmax]
//                     [--shapes 2560x2560,6912x2560,...] [--reps N]
// Shapes are NxK. Reports the median time, packed-weight GB/s and GOP/s
// (2*M*N*K). --cold rotates through weight copies larger than the LLC.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "kernels.h"

using namespace bitnet_ext::cpu;
using Clock = std::chrono::steady_clock;

static std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  size_t p = 0;
  while (p < s.size()) {
    size_t q = s.find(',', p);
    if (q == std::string::npos) q = s.size();
    out.push_back(std::stoll(s.substr(p, q - p)));
    p = q + 1;
  }
  return out;
}

static double read_bandwidth(int threads) {
  const size_t bytes = size_t(512) << 20;
  std::vector<uint64_t> buf(bytes / 8, 1);
  std::vector<double> times;
  for (int rep = 0; rep < 5; ++rep) {
    std::vector<uint64_t> sums(threads * 8, 0);
    auto t0 = Clock::now();
    std::vector<std::thread> th;
    for (int t = 0; t < threads; ++t)
      th.emplace_back([&, t] {
        const size_t n = buf.size() / threads;
        const uint64_t* p = buf.data() + t * n;
        uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
        for (size_t i = 0; i < n; i += 8) {
          a0 += p[i];
          a1 += p[i + 1];
          a2 += p[i + 2];
          a3 += p[i + 3];
          a4 += p[i + 4];
          a5 += p[i + 5];
          a6 += p[i + 6];
          a7 += p[i + 7];
        }
        sums[t * 8] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
      });
    for (auto& t : th) t.join();
    times.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    if (sums[0] == 42) std::printf(" ");
  }
  std::sort(times.begin(), times.end());
  return bytes / times[0] / 1e9;
}

// v rounded to the nearest bfloat16 (ties to even), as a float.
static float bf16_value(float v) {
  uint32_t u;
  std::memcpy(&u, &v, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  std::memcpy(&v, &u, 4);
  return v;
}

// Size of the last-level cache in bytes (sysconf where glibc knows it, else 32 MiB).
int64_t llc_bytes() {
#if defined(_SC_LEVEL3_CACHE_SIZE)
  const long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 > 0) return l3;
#endif
  return int64_t(32) << 20;
}

int main(int argc, char** argv) {
  bool cold = false;
  std::vector<int64_t> threads = {1, 2}, Ms = {1, 8, 128, 512};
  std::vector<std::pair<int64_t, int64_t>> shapes = {{2560, 2560}, {6912, 2560}, {2560, 6912}, {4096, 4096}};
  std::string op = "all";
  int reps = 0;
  bool bw = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--cold") cold = true;
    else if (a == "--bw") bw = true;
    else if (a == "--threads" && i + 1 < argc) threads = parse_list(argv[++i]);
    else if (a == "--ms" && i + 1 < argc) Ms = parse_list(argv[++i]);
    else if (a == "--op" && i + 1 < argc) op = argv[++i];
    else if (a == "--reps" && i + 1 < argc) reps = std::atoi(argv[++i]);
    else if (a == "--shapes" && i + 1 < argc) {
      shapes.clear();
      std::string s = argv[++i];
      size_t p = 0;
      while (p < s.size()) {
        size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        std::string t = s.substr(p, q - p);
        size_t x = t.find('x');
        shapes.push_back({std::stoll(t.substr(0, x)), std::stoll(t.substr(x + 1))});
        p = q + 1;
      }
    }
  }
  std::printf("isa=%s\n", isa_name(active_isa()));
  if (bw)
    for (auto t : threads) std::printf("read bandwidth t=%ld: %.1f GB/s\n", long(t), read_bandwidth(int(t)));
  std::mt19937 rng(1);
  for (auto [N, K] : shapes) {
    const int64_t wbytes = N * K / 4;
    // Cold: copies spanning twice the last-level cache (at least 256 MiB; a
    // VM may report an L3 of hundreds of MB), each timed call on the next one.
    const int64_t cold_bytes = std::max<int64_t>(int64_t(256) << 20, 2 * llc_bytes());
    const int64_t ncopies = cold ? std::max<int64_t>(2, cold_bytes / wbytes + 1) : 1;
    std::vector<std::vector<uint32_t>> W(ncopies, std::vector<uint32_t>(N * K / 16));
    for (auto& w : W)
      for (auto& v : w) {
        uint32_t x = 0;
        for (int i = 0; i < 16; ++i) x |= uint32_t(rng() % 3) << (2 * i);
        v = x;
      }
    std::vector<float> scale(N, 0.5f), bias(N, 0.1f);
    for (auto M : Ms) {
      std::vector<float> x(M * K), y(M * N), yn(M * K), xs(M);
      std::vector<int8_t> xq(M * K);
      std::vector<int32_t> acc(M * N);
      for (auto& v : x) v = float(int(rng() % 2001) - 1000) / 1000.0f;
      // The same x rounded to bfloat16 (a bf16 model's activations; tmm_bf16).
      std::vector<float> xb(x);
      for (auto& v : xb) v = bf16_value(v);
      absmax_quantize(x.data(), K, 1e-5f, xq.data(), xs.data(), M, K);
      for (auto t : threads) {
        set_num_threads(int(t));
        struct Op {
          const char* name;
          bool on;
        };
        auto run = [&](const char* name, auto&& fn) {
          if (op != "all" && op != name) return;
          const double gop = 2.0 * M * N * K / 1e9;
          int r = reps > 0 ? reps : int(std::clamp<double>(2.0 / (gop + 0.002), 5, 300));
          // Cold: enough calls to cycle through every copy, so none is still cached.
          if (cold && reps <= 0) r = std::max<int>(r, int(ncopies));
          std::vector<double> ts;
          fn(W[0].data());
          for (int i = 0; i < r; ++i) {
            const uint32_t* w = W[(i + 1) % ncopies].data();
            auto t0 = Clock::now();
            fn(w);
            ts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
          }
          std::sort(ts.begin(), ts.end());
          const double med = ts[ts.size() / 2];
          std::printf("%-10s %s N=%5ld K=%5ld M=%4ld t=%ld  %9.1f us  %7.2f GB/s  %8.1f GOP/s\n", name,
                      cold ? "cold" : "hot ", long(N), long(K), long(M), long(t), med * 1e6, wbytes / med / 1e9,
                      gop / med);
        };
        run("memread", [&](const uint32_t* w) {
          // Reference: a plain threaded read of the same weight bytes.
          const int64_t nw = N * K / 16;
          std::vector<uint64_t> part(64, 0);
          const int nt = num_threads();
          std::vector<std::thread> th;
          for (int t = 0; t < nt; ++t)
            th.emplace_back([&, t] {
              const uint64_t* p = reinterpret_cast<const uint64_t*>(w) + nw / 2 * t / nt;
              const int64_t n = nw / 2 / nt;
              uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
              for (int64_t i = 0; i + 4 <= n; i += 4) {
                a0 += p[i];
                a1 += p[i + 1];
                a2 += p[i + 2];
                a3 += p[i + 3];
              }
              part[t * 8] = a0 + a1 + a2 + a3;
            });
          for (auto& x : th) x.join();
          if (part[0] == 1) std::printf(" ");
        });
        run("bitlinear", [&](const uint32_t* w) {
          absmax_quantize(x.data(), K, 1e-5f, xq.data(), xs.data(), M, K);
          bitlinear(xq.data(), xs.data(), w, scale.data(), true, bias.data(), y.data(), M, N, K);
        });
        run("i8", [&](const uint32_t* w) { ternary_matmul_i8(xq.data(), w, acc.data(), M, N, K); });
        run("tmm", [&](const uint32_t* w) {
          ternary_matmul_t(x.data(), K, w, scale.data(), true, y.data(), M, N, K);
        });
        run("tmm_bf16", [&](const uint32_t* w) {
          ternary_matmul_t(xb.data(), K, w, scale.data(), true, y.data(), M, N, K);
        });
        run("tmm_n", [&](const uint32_t* w) {
          ternary_matmul_n(y.data(), N, w, scale.data(), true, yn.data(), M, N, K);
        });
      }
    }
  }
  return 0;
}
