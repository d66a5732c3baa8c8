// Runtime detection of the instruction-set level and its overrides.
#include <atomic>
#include <cstdlib>
#include <cctype>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels.h"
#include "kernels_impl.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define BITNET_EXT_X86 1
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif
#elif defined(__aarch64__) || defined(_M_ARM64)
#define BITNET_EXT_ARM64 1
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif
#endif

namespace bitnet_ext::cpu {
namespace {

#if defined(BITNET_EXT_X86)
uint64_t xgetbv0() {
  uint32_t eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<uint64_t>(edx) << 32) | eax;
}

struct X86Features {
  bool avx2 = false, avx512 = false, vnni = false, bf16 = false, amx = false;
};

// AMX tile data is a dynamically enabled state on Linux: a process asks the
// kernel once (arch_prctl ARCH_REQ_XCOMP_PERM for XTILEDATA) before its first
// tile instruction, which otherwise faults. Other systems: not offered.
bool amx_permitted() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr int kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

X86Features detect_x86() {
  X86Features f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27);
  const bool avx = c & (1u << 28);
  const bool fma = c & (1u << 12);
  const bool f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr0 = xgetbv0();
  const bool os_ymm = (xcr0 & 0x6) == 0x6; // SSE + AVX state
  const bool os_zmm = (xcr0 & 0xe6) == 0xe6; // + opmask, ZMM_Hi256, Hi16_ZMM
  if (!os_ymm) return f;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5);
  const bool avx512f = b & (1u << 16);
  const bool avx512dq = b & (1u << 17);
  const bool avx512bw = b & (1u << 30);
  const bool avx512vl = b & (1u << 31);
  const bool avx512vnni = c & (1u << 11);
  const bool amx_bf16 = d & (1u << 22), amx_tile = d & (1u << 24), amx_int8 = d & (1u << 25);
  f.avx2 = avx2 && fma && f16c;
  f.avx512 = f.avx2 && os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.vnni = f.avx512 && avx512vnni;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  if (a >= 1) __cpuid_count(7, 1, a1, b1, c1, d1); // subleaf 1 exists when leaf 7's eax >= 1
  f.bf16 = f.vnni && (a1 & (1u << 5)); // AVX512_BF16
  const bool os_tiles = (xcr0 & 0x60000) == 0x60000; // XTILECFG + XTILEDATA
  f.amx = f.vnni && amx_tile && amx_int8 && amx_bf16 && os_tiles && amx_permitted();
  return f;
}
#endif

#if defined(BITNET_EXT_ARM64)
bool arm_dotprod() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
  int v = 0;
  size_t len = sizeof(v);
  if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &v, &len, nullptr, 0) != 0) return false;
  return v != 0;
#else
  return false;
#endif
}
bool arm_asimd() {
#if defined(__linux__)
  return (getauxval(AT_HWCAP) & HWCAP_ASIMD) != 0;
#else
  return true; // Advanced SIMD is mandatory on arm64.
#endif
}
#endif

bool cpu_supports(Isa isa) {
  switch (isa) {
    case Isa::Scalar:
      return true;
#if defined(BITNET_EXT_X86)
    case Isa::Avx2: {
      static const X86Features f = detect_x86();
      return f.avx2;
    }
    case Isa::Avx512: {
      static const X86Features f = detect_x86();
      return f.avx512;
    }
    case Isa::Avx512Vnni: {
      static const X86Features f = detect_x86();
      return f.vnni;
    }
    case Isa::Avx512Amx: {
      static const X86Features f = detect_x86();
      return f.amx;
    }
    case Isa::Avx512Bf16: {
      static const X86Features f = detect_x86();
      return f.bf16;
    }
#endif
#if defined(BITNET_EXT_ARM64)
    case Isa::Neon: {
      static const bool v = arm_asimd();
      return v;
    }
    case Isa::NeonDot: {
      static const bool v = arm_asimd() && arm_dotprod();
      return v;
    }
#endif
    default:
      return false;
  }
}

constexpr const char* kNames[] = {"scalar", "avx2", "avx512", "avx512_vnni", "neon", "neon_dot", "avx512_amx",
                                  "avx512_bf16"};
constexpr int kNumIsa = 8;

std::string supported_list() {
  std::string s;
  for (int i = 0; i < kNumIsa; ++i) {
    if (isa_supported(static_cast<Isa>(i))) {
      if (!s.empty()) s += ", ";
      s += kNames[i];
    }
  }
  return s;
}

Isa isa_from_env() {
  const char* env = std::getenv("BITNET_EXT_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  std::string v(env);
  for (auto& ch : v) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (int i = 0; i < kNumIsa; ++i) {
    if (v == kNames[i]) {
      Isa isa = static_cast<Isa>(i);
      if (!isa_supported(isa)) {
        throw std::invalid_argument(
            std::string("BITNET_EXT_ISA='") + env + "' is not supported by this CPU/build; supported: " +
            supported_list());
      }
      return isa;
    }
  }
  throw std::invalid_argument(
      std::string("BITNET_EXT_ISA='") + env +
      "' is not a known ISA level (known: scalar, avx2, avx512, avx512_vnni, avx512_bf16, avx512_amx, neon, neon_dot; "
      "supported here: " +
      supported_list() + ")");
}

// -1: not chosen yet (read the environment on next use).
std::atomic<int> g_active{-1};

} // namespace

const char* isa_name(Isa isa) {
  const int i = static_cast<int>(isa);
  return (i >= 0 && i < kNumIsa) ? kNames[i] : "unknown";
}

bool isa_supported(Isa isa) {
  // The CPU check first: nothing of a level's translation unit may run on a
  // CPU without it.
  return cpu_supports(isa) && isa_compiled(isa);
}

Isa best_isa() {
  static const Isa best = [] {
    for (int i : {6, 7, 3, 2, 1, 5, 4}) {
      if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
    }
    return Isa::Scalar;
  }();
  return best;
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<Isa>(v);
  const Isa isa = isa_from_env(); // may throw
  int expected = -1;
  g_active.compare_exchange_strong(expected, static_cast<int>(isa), std::memory_order_acq_rel);
  return static_cast<Isa>(g_active.load(std::memory_order_acquire));
}

void set_isa(Isa isa) {
  if (!isa_supported(isa)) {
    throw std::invalid_argument(
        std::string("ISA level '") + isa_name(isa) + "' is not supported by this CPU/build; supported: " +
        supported_list());
  }
  g_active.store(static_cast<int>(isa), std::memory_order_release);
}

void reset_isa() {
  g_active.store(-1, std::memory_order_release);
}

} // namespace bitnet_ext::cpu
