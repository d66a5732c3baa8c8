// Scaled dot-product attention of the CPU kernels (a model's decode and
// prompt attention), reading the keys and values where they lie (e.g. a
// slice of a preallocated KV cache) in float32 / float16 / bfloat16.
//
// Like kernels.h and dense.h, plain C++ over pointers and sizes, no MLX
// types; the ISA level and thread count are those of kernels.h.
#pragma once

#include <cstdint>

#include "dense.h" // DenseType

namespace bitnet_ext::cpu {

// out = softmax(q k^T * scale [+ causal mask]) v for every batch b and query
// head h, with key-value head h / (Hq / Hkv) (grouped-query attention).
//   q:   (B, Hq, L, D) float32, contiguous.
//   k/v: (B, Hkv, S, D) of kv_type, element strides (b, h, s) in k_stride /
//        v_stride, stride 1 along D.
//   out: (B, L, Hq, D) float32, contiguous: the layout the attention output
//        projection reads, so no transpose follows.
// causal: query i sits at position S - L + i and sees keys 0 .. S - L + i
// (queries that see no key, L > S, get zeros). Scores, softmax and the
// weighted sum are float32; the masked keys are skipped, not multiplied.
struct AttentionArgs {
  const float* q;
  const void* k;
  const void* v;
  DenseType kv_type;
  int64_t k_stride[3];
  int64_t v_stride[3];
  float* out;
  int64_t B, Hq, Hkv, L, S, D;
  float scale;
  bool causal;
};

void attention(const AttentionArgs& a);

} // namespace bitnet_ext::cpu
