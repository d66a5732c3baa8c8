// Conversions between ternary codes and the packed layout. One thread per
// packed word (16 codes).
#pragma once

#include "ternary_utils.h"

// int8 codes in {-1, 0, 1} -> packed words. A value outside {-1, 0, 1} sets
// *invalid (the host may report it); its field then holds a clamped code.
inline void ternary_pack_impl(const device int8_t* codes, device uint* wq, device atomic_uint* invalid, int words,
                              uint i) {
  if (static_cast<int>(i) >= words) {
    return;
  }
  codes += static_cast<ulong>(i) * 16;
  uint word = 0;
  bool bad = false;
  for (int j = 0; j < 16; ++j) {
    const int c = static_cast<int>(codes[j]);
    bad = bad || c < -1 || c > 1;
    word |= static_cast<uint>(clamp(c, -1, 1) + 1) << (2 * j);
  }
  wq[i] = word;
  if (bad) {
    atomic_fetch_or_explicit(invalid, 1u, memory_order_relaxed);
  }
}

inline void ternary_unpack_impl(const device uint* wq, device int8_t* codes, int words, uint i) {
  if (static_cast<int>(i) >= words) {
    return;
  }
  const uint w = wq[i];
  codes += static_cast<ulong>(i) * 16;
  for (int j = 0; j < 16; ++j) {
    codes[j] = static_cast<int8_t>(ternary_at(w, j));
  }
}

// out[n, k] = T(s(n) * W[n, k]).
template <typename T>
inline void ternary_dequantize_impl(const device uint* wq, const device float* scale, device T* out, int N, int K,
                                    int per_row, uint i) {
  const int words = K / 16;
  if (static_cast<ulong>(i) >= static_cast<ulong>(N) * words) {
    return;
  }
  const int n = static_cast<int>(i / static_cast<uint>(words));
  const float s = row_scale(scale, per_row, n);
  const uint w = wq[i];
  out += static_cast<ulong>(i) * 16;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<T>(s * static_cast<float>(ternary_at(w, j)));
  }
}
