// The Metal Shading Language subset used by kernels/, for g++ (C++20).
//
// Included (as <metal_stdlib>, see include/metal_stdlib) by the real .metal
// sources when the harness compiles them. All system headers come first; the
// address-space words become empty macros only after them. Built-in indices
// ([[thread_position_in_grid]] ...) are passed by the generated wrappers (g++
// ignores the attributes, -Wno-attributes), so nothing here reads them.
//
// Semantics kept:
// - half = _Float16 (IEEE binary16, rounded per operation; __fp16 on arm64
//   with g++ < 13, a struct with BNH_SOFT_HALF), bfloat = a struct with
//   round-to-nearest-even conversion from float.
// - simd_* collectives and barriers synchronize the fibers of a threadgroup
//   (runtime.cpp); results are computed in a fixed lane order, so they are
//   deterministic whatever order the fibers ran in.
// - simdgroup_matrix<T, 8, 8>: each lane owns 2 elements (thread_elements()),
//   in Apple's layout; multiply-accumulate is a collective over the lanes.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sys/types.h>
#include <type_traits>

#include "runtime.h"

// ---------------------------------------------------------------------------
// Scalar types

typedef unsigned int uint;
typedef unsigned short ushort;
typedef unsigned char uchar;
typedef unsigned long ulong;
#if defined(BNH_SOFT_HALF)
// For compilers without a usable binary16 type (e.g. clang < 15 on x86-64,
// used for syntax checks): a struct, converting with round-to-nearest-even.
struct half {
  uint16_t bits = 0;
  half() = default;
  explicit half(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, mant = u & 0x7FFFFFu;
    int32_t exp = int32_t((u >> 23) & 0xFF) - 112;
    if (((u >> 23) & 0xFF) == 0xFF) {
      bits = uint16_t(sign | 0x7C00u | (mant ? 0x200u : 0u));
    } else if (exp >= 31) {
      bits = uint16_t(sign | 0x7C00u);
    } else if (exp <= 0) {
      if (exp < -10) {
        bits = uint16_t(sign);
      } else {
        mant |= 0x800000u;
        uint32_t shift = uint32_t(14 - exp), h = mant >> shift, rest = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
        h += (rest > halfway || (rest == halfway && (h & 1u))) ? 1u : 0u;
        bits = uint16_t(sign | h);
      }
    } else {
      uint32_t h = (uint32_t(exp) << 10) | (mant >> 13), rest = mant & 0x1FFFu;
      h += (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) ? 1u : 0u;
      bits = uint16_t(sign | h);
    }
  }
  explicit half(double d) : half(float(d)) {}
  explicit half(int i) : half(float(i)) {}
  operator float() const {
    uint32_t sign = uint32_t(bits & 0x8000u) << 16, exp = (bits >> 10) & 0x1Fu, mant = bits & 0x3FFu, u;
    if (exp == 0) {
      float f = float(mant) * (1.0f / 16777216.0f);
      return sign ? -f : f;
    }
    u = sign | (exp == 31 ? 0x7F800000u | (mant << 13) : ((exp + 112) << 23) | (mant << 13));
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
#elif defined(__aarch64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ < 13
// g++ < 13 has no _Float16 in C++ on arm64; __fp16 converts the same way
// (IEEE binary16, round to nearest even) and computes in float.
typedef __fp16 half;
#else
typedef _Float16 half;
#endif

struct bfloat {
  uint16_t bits = 0;
  bfloat() = default;
  explicit bfloat(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) {
      bits = uint16_t((u >> 16) | 0x40u); // quiet NaN
    } else {
      u += 0x7FFFu + ((u >> 16) & 1u); // round to nearest even
      bits = uint16_t(u >> 16);
    }
  }
  explicit bfloat(double d) : bfloat(float(d)) {}
  explicit bfloat(int i) : bfloat(float(i)) {}
  explicit bfloat(half h) : bfloat(float(h)) {}
  operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};
static_assert(sizeof(bfloat) == 2);

// ---------------------------------------------------------------------------
// Vector types

namespace bnh {

template <class T, int N>
struct vec_storage;
template <class T>
struct vec_storage<T, 2> {
  T x, y;
};
template <class T>
struct vec_storage<T, 3> {
  T x, y, z;
  T pad_{}; // float3 etc. occupy 4 elements, as in MSL
};
template <class T>
struct vec_storage<T, 4> {
  T x, y, z, w;
};

constexpr size_t vec_align(size_t s, int n) {
  return s * size_t(n == 3 ? 4 : n);
}

template <class T, int N>
struct alignas(vec_align(sizeof(T), N)) vec : vec_storage<T, N> {
  using value_type = T;
  static constexpr int size = N;
  vec() = default;
  explicit vec(T s) {
    for (int i = 0; i < N; ++i) {
      (*this)[i] = s;
    }
  }
  template <class... A, std::enable_if_t<sizeof...(A) == N && (N > 1), int> = 0>
  vec(A... a) {
    T v[] = {T(a)...};
    for (int i = 0; i < N; ++i) {
      (*this)[i] = v[i];
    }
  }
  template <class U>
  explicit vec(const vec<U, N>& o) {
    for (int i = 0; i < N; ++i) {
      (*this)[i] = T(o[i]);
    }
  }
  T& operator[](int i) {
    return reinterpret_cast<T*>(this)[i];
  }
  const T& operator[](int i) const {
    return reinterpret_cast<const T*>(this)[i];
  }
#define BNH_VEC_OP(op)                                \
  friend vec operator op(vec a, const vec& b) {       \
    for (int i = 0; i < N; ++i) a[i] = a[i] op b[i];  \
    return a;                                         \
  }                                                   \
  friend vec operator op(vec a, T b) {                \
    for (int i = 0; i < N; ++i) a[i] = a[i] op b;     \
    return a;                                         \
  }                                                   \
  friend vec operator op(T a, vec b) {                \
    for (int i = 0; i < N; ++i) b[i] = a op b[i];     \
    return b;                                         \
  }                                                   \
  vec& operator op##=(const vec & b) {                \
    return *this = *this op b;                        \
  }                                                   \
  vec& operator op##=(T b) {                          \
    return *this = *this op b;                        \
  }
  BNH_VEC_OP(+)
  BNH_VEC_OP(-)
  BNH_VEC_OP(*)
  BNH_VEC_OP(/)
#undef BNH_VEC_OP
};

template <class T>
struct is_vec : std::false_type {};
template <class T, int N>
struct is_vec<vec<T, N>> : std::true_type {};

} // namespace bnh

#define BNH_VEC_TYPES(T, name)        \
  typedef bnh::vec<T, 2> name##2;     \
  typedef bnh::vec<T, 3> name##3;     \
  typedef bnh::vec<T, 4> name##4;
BNH_VEC_TYPES(float, float)
BNH_VEC_TYPES(half, half)
BNH_VEC_TYPES(bfloat, bfloat)
BNH_VEC_TYPES(int, int)
BNH_VEC_TYPES(uint, uint)
BNH_VEC_TYPES(short, short)
BNH_VEC_TYPES(ushort, ushort)
BNH_VEC_TYPES(char, char)
BNH_VEC_TYPES(uchar, uchar)
BNH_VEC_TYPES(bool, bool)
BNH_VEC_TYPES(ulong, ulong)
BNH_VEC_TYPES(long, long)
#undef BNH_VEC_TYPES

namespace metal {

// ---------------------------------------------------------------------------
// Reinterpretation and math

template <class To, class From>
To as_type(const From& f) {
  static_assert(sizeof(To) == sizeof(From), "as_type: sizes differ");
  To t;
  std::memcpy(static_cast<void*>(&t), &f, sizeof(To));
  return t;
}

template <class T>
T min(T a, T b) {
  return b < a ? b : a;
}
template <class T>
T max(T a, T b) {
  return a < b ? b : a;
}
template <class T>
T clamp(T x, T lo, T hi) {
  return min(max(x, lo), hi);
}
inline float abs(float x) {
  return std::fabs(x);
}
inline int abs(int x) {
  return x < 0 ? -x : x;
}
inline float fabs(float x) {
  return std::fabs(x);
}
inline float rint(float x) {
  return std::nearbyint(x); // round to nearest even (default rounding mode)
}
inline float round(float x) {
  return std::round(x); // half away from zero, as MSL's round
}
inline float floor(float x) {
  return std::floor(x);
}
inline float ceil(float x) {
  return std::ceil(x);
}
inline float sqrt(float x) {
  return std::sqrt(x);
}
inline float fma(float a, float b, float c) {
  return std::fma(a, b, c);
}
inline bool isnan(float x) {
  return std::isnan(x);
}
inline bool isinf(float x) {
  return std::isinf(x);
}
template <class T>
T select(T a, T b, bool c) {
  return c ? b : a;
}

namespace precise {
inline float divide(float a, float b) {
  return a / b;
}
inline float sqrt(float x) {
  return std::sqrt(x);
}
} // namespace precise
namespace fast {
inline float divide(float a, float b) {
  return a / b;
}
} // namespace fast

// ---------------------------------------------------------------------------
// Barriers

enum class mem_flags : int { mem_none = 0, mem_device = 1, mem_threadgroup = 2, mem_texture = 4 };
inline mem_flags operator|(mem_flags a, mem_flags b) {
  return mem_flags(int(a) | int(b));
}

inline void threadgroup_barrier(mem_flags f) {
  bnh::threadgroup_barrier_wait((int(f) & int(mem_flags::mem_threadgroup)) != 0);
}
inline void simdgroup_barrier(mem_flags) {
  bnh::simdgroup_barrier_wait();
}

// ---------------------------------------------------------------------------
// Simdgroup collectives

namespace detail {

template <class T>
struct Sum {
  static T combine(T a, T b) {
    if constexpr (std::is_same_v<T, bfloat>) {
      return T(float(a) + float(b));
    } else {
      return T(a + b);
    }
  }
  static constexpr const char* name = "simd_sum";
};
template <class T>
struct Max {
  static T combine(T a, T b) {
    return a < b ? b : a;
  }
  static constexpr const char* name = "simd_max";
};
template <class T>
struct Min {
  static T combine(T a, T b) {
    return b < a ? b : a;
  }
  static constexpr const char* name = "simd_min";
};

// Reduction in a fixed butterfly order over the present lanes (absent lanes
// are skipped), then every lane gets the total.
template <class T, class Op>
void reduce_compute(const void* const* in, void* const* out, const uint32_t*, uint32_t present) {
  T v[32];
  bool has[32];
  for (int l = 0; l < 32; ++l) {
    has[l] = present & (1u << l);
    if (has[l]) {
      v[l] = *static_cast<const T*>(in[l]);
    }
  }
  for (int step = 1; step < 32; step *= 2) {
    for (int l = 0; l < 32; l += 2 * step) {
      if (has[l] && has[l + step]) {
        v[l] = Op::combine(v[l], v[l + step]);
      } else if (has[l + step]) {
        v[l] = v[l + step];
        has[l] = true;
      }
    }
  }
  for (int l = 0; l < 32; ++l) {
    if (present & (1u << l)) {
      *static_cast<T*>(out[l]) = v[0];
    }
  }
}

template <class T, class Op>
T reduce(T x) {
  static const bnh::SimdOp op{&reduce_compute<T, Op>, Op::name};
  T r;
  bnh::simd_collective(&op, &x, &r, 0);
  return r;
}

enum class Shuffle { Index, Xor, Down, Up };

template <class T, Shuffle S>
void shuffle_compute(const void* const* in, void* const* out, const uint32_t* arg, uint32_t present) {
  for (uint32_t l = 0; l < 32; ++l) {
    if (!(present & (1u << l))) {
      continue;
    }
    uint32_t src = 0;
    switch (S) {
      case Shuffle::Index:
        src = arg[l];
        break;
      case Shuffle::Xor:
        src = l ^ arg[l];
        break;
      case Shuffle::Down:
        src = l + arg[l] < 32 ? l + arg[l] : l;
        break;
      case Shuffle::Up:
        src = l >= arg[l] ? l - arg[l] : l;
        break;
    }
    src &= 31u;
    if (!(present & (1u << src))) {
      bnh::kernel_fail("simd shuffle reads an inactive lane");
    }
    *static_cast<T*>(out[l]) = *static_cast<const T*>(in[src]);
  }
}

template <class T, Shuffle S>
T shuffle(T x, uint32_t a, const char* name) {
  static const bnh::SimdOp op{&shuffle_compute<T, S>, name};
  T r;
  bnh::simd_collective(&op, &x, &r, a);
  return r;
}

} // namespace detail

template <class T>
T simd_sum(T x) {
  return detail::reduce<T, detail::Sum<T>>(x);
}
template <class T>
T simd_max(T x) {
  return detail::reduce<T, detail::Max<T>>(x);
}
template <class T>
T simd_min(T x) {
  return detail::reduce<T, detail::Min<T>>(x);
}
template <class T>
T simd_shuffle(T x, ushort lane) {
  return detail::shuffle<T, detail::Shuffle::Index>(x, lane, "simd_shuffle");
}
template <class T>
T simd_broadcast(T x, ushort lane) {
  return detail::shuffle<T, detail::Shuffle::Index>(x, lane, "simd_broadcast");
}
template <class T>
T simd_shuffle_xor(T x, ushort mask) {
  return detail::shuffle<T, detail::Shuffle::Xor>(x, mask, "simd_shuffle_xor");
}
template <class T>
T simd_shuffle_down(T x, ushort delta) {
  return detail::shuffle<T, detail::Shuffle::Down>(x, delta, "simd_shuffle_down");
}
template <class T>
T simd_shuffle_up(T x, ushort delta) {
  return detail::shuffle<T, detail::Shuffle::Up>(x, delta, "simd_shuffle_up");
}

// ---------------------------------------------------------------------------
// Atomics (device memory; threadgroups may run on several OS threads)

enum memory_order { memory_order_relaxed = 0 };

template <class T>
struct _atomic {
  T value;
};
typedef _atomic<uint> atomic_uint;
typedef _atomic<int> atomic_int;

template <class T>
T atomic_fetch_or_explicit(_atomic<T>* a, T v, memory_order) {
  return __atomic_fetch_or(&a->value, v, __ATOMIC_RELAXED);
}
template <class T>
T atomic_fetch_add_explicit(_atomic<T>* a, T v, memory_order) {
  return __atomic_fetch_add(&a->value, v, __ATOMIC_RELAXED);
}
template <class T>
T atomic_fetch_max_explicit(_atomic<T>* a, T v, memory_order) {
  T cur = __atomic_load_n(&a->value, __ATOMIC_RELAXED);
  while (cur < v && !__atomic_compare_exchange_n(&a->value, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
  return cur;
}
template <class T>
void atomic_store_explicit(_atomic<T>* a, T v, memory_order) {
  __atomic_store_n(&a->value, v, __ATOMIC_RELAXED);
}
template <class T>
T atomic_load_explicit(const _atomic<T>* a, memory_order) {
  return __atomic_load_n(&a->value, __ATOMIC_RELAXED);
}

// ---------------------------------------------------------------------------
// simdgroup_matrix<T, 8, 8>

// Element (row, col) of an 8x8 matrix owned by `lane`: lane owns (r, c) and
// (r, c + 1) (Apple's layout, as used by MLX's steel MMA fragments).
inline void simdgroup_lane_rc(uint32_t lane, int& r, int& c) {
  int qid = int(lane) / 4;
  r = (qid & 4) + (int(lane) / 2) % 4;
  c = (qid & 2) * 2 + (int(lane) % 2) * 2;
}

template <class T, int Cols, int Rows>
struct simdgroup_matrix {
  static_assert(Cols == 8 && Rows == 8, "bnh: only 8x8 simdgroup matrices");
  bnh::vec<T, 2> e; // this lane's two elements
  simdgroup_matrix() = default;
  bnh::vec<T, 2>& thread_elements() {
    return e;
  }
  const bnh::vec<T, 2>& thread_elements() const {
    return e;
  }
};

typedef simdgroup_matrix<float, 8, 8> simdgroup_float8x8;
typedef simdgroup_matrix<half, 8, 8> simdgroup_half8x8;
typedef simdgroup_matrix<bfloat, 8, 8> simdgroup_bfloat8x8;

template <class T, int Cols = 8, int Rows = 8>
simdgroup_matrix<T, Cols, Rows> make_filled_simdgroup_matrix(T v) {
  simdgroup_matrix<T, 8, 8> m;
  m.e = bnh::vec<T, 2>(v, v);
  return m;
}

// Loads/stores touch only this lane's elements (the data each lane would get
// from the cooperative operation on the GPU).
template <class T, class U>
void simdgroup_load(
    simdgroup_matrix<T, 8, 8>& d,
    const U* src,
    ulong elements_per_row = 8,
    ulong2 origin = ulong2(0ul, 0ul),
    bool transpose = false) {
  int r, c;
  simdgroup_lane_rc(bnh::current_ids().thread_index_in_simdgroup, r, c);
  for (int j = 0; j < 2; ++j) {
    ulong row = ulong(r), col = ulong(c + j);
    // origin is (column, row) of the source.
    ulong sr = transpose ? col : row, sc = transpose ? row : col;
    d.e[j] = T(src[(origin.y + sr) * elements_per_row + origin.x + sc]);
  }
}

template <class T, class U>
void simdgroup_store(
    const simdgroup_matrix<T, 8, 8>& s,
    U* dst,
    ulong elements_per_row = 8,
    ulong2 origin = ulong2(0ul, 0ul),
    bool transpose = false) {
  int r, c;
  simdgroup_lane_rc(bnh::current_ids().thread_index_in_simdgroup, r, c);
  for (int j = 0; j < 2; ++j) {
    ulong row = ulong(r), col = ulong(c + j);
    ulong dr = transpose ? col : row, dc = transpose ? row : col;
    dst[(origin.y + dr) * elements_per_row + origin.x + dc] = U(s.e[j]);
  }
}

namespace detail {

template <class T>
struct MmaLane {
  bnh::vec<T, 2> a, b, c;
};

template <class T>
void mma_compute(const void* const* in, void* const* out, const uint32_t*, uint32_t present) {
  if (present != 0xFFFFFFFFu) {
    bnh::kernel_fail("simdgroup_multiply_accumulate needs all 32 lanes active");
  }
  float A[8][8], B[8][8], C[8][8];
  for (uint32_t l = 0; l < 32; ++l) {
    const auto& m = *static_cast<const MmaLane<T>*>(in[l]);
    int r, c;
    simdgroup_lane_rc(l, r, c);
    for (int j = 0; j < 2; ++j) {
      A[r][c + j] = float(m.a[j]);
      B[r][c + j] = float(m.b[j]);
      C[r][c + j] = float(m.c[j]);
    }
  }
  for (uint32_t l = 0; l < 32; ++l) {
    int r, c;
    simdgroup_lane_rc(l, r, c);
    auto& d = *static_cast<bnh::vec<T, 2>*>(out[l]);
    for (int j = 0; j < 2; ++j) {
      float acc = 0.0f;
      for (int k = 0; k < 8; ++k) {
        acc = std::fma(A[r][k], B[k][c + j], acc);
      }
      d[j] = T(acc + C[r][c + j]);
    }
  }
}

} // namespace detail

template <class T>
void simdgroup_multiply_accumulate(
    simdgroup_matrix<T, 8, 8>& d,
    const simdgroup_matrix<T, 8, 8>& a,
    const simdgroup_matrix<T, 8, 8>& b,
    const simdgroup_matrix<T, 8, 8>& c) {
  static const bnh::SimdOp op{&detail::mma_compute<T>, "simdgroup_multiply_accumulate"};
  detail::MmaLane<T> in{a.e, b.e, c.e};
  bnh::vec<T, 2> r;
  bnh::simd_collective(&op, &in, &r, 0);
  d.e = r;
}

template <class T>
void simdgroup_multiply(
    simdgroup_matrix<T, 8, 8>& d,
    const simdgroup_matrix<T, 8, 8>& a,
    const simdgroup_matrix<T, 8, 8>& b) {
  simdgroup_multiply_accumulate(d, a, b, make_filled_simdgroup_matrix<T, 8, 8>(T(0)));
}

} // namespace metal

// ---------------------------------------------------------------------------
// Address spaces and qualifiers: nothing on the CPU. (After every system
// header: these words must not reach libstdc++.)
#define device
#define constant
#define thread
#define threadgroup
#define kernel
