// The W side of the decode GEMVs (ternary_gemv.cu, bitlinear_gemv.cu): a
// block of kGemvWarps warps owns 16 R rows of W; in each step lane (g, t) of a
// warp reads words 4t..4t+3 (16 bytes) of rows g and g + 8 of each 16-row
// tile, so a warp reads 8 rows x 64 contiguous bytes per tile (whole sectors).
#pragma once

#include "ternary_mma.cuh"

namespace bitnet_cuda {

constexpr int kGemvWarps = 4; // warps per block, splitting K

// One step's words of this lane: a[r][i] from row 16 r + g, b[r][i] from row 16 r + g + 8.
template <int R>
struct WStep {
  uint32_t a[R][4]; // rows 16 r + g
  uint32_t b[R][4]; // rows 16 r + g + 8
};

// Vec: W and every row start 16-byte aligned (K % 64 == 0), one 16-byte load
// per row, a lane's 4 words all inside K or all past it; else word loads.
// Words past K read as kZeroWord (W = 0).
template <int R, bool Vec>
__device__ __forceinline__ void load_w(
    WStep<R>& st, const uint32_t* const (&ra)[R], const uint32_t* const (&rb)[R], int wbase, int words) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    if (Vec) {
      // words % 4 == 0 here, so a lane's 4 words are all inside K or all past it.
      if (wbase < words) {
        const uint4 va = ld_stream(reinterpret_cast<const uint4*>(ra[r] + wbase));
        const uint4 vb = ld_stream(reinterpret_cast<const uint4*>(rb[r] + wbase));
        st.a[r][0] = va.x, st.a[r][1] = va.y, st.a[r][2] = va.z, st.a[r][3] = va.w;
        st.b[r][0] = vb.x, st.b[r][1] = vb.y, st.b[r][2] = vb.z, st.b[r][3] = vb.w;
      } else {
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          st.a[r][i] = st.b[r][i] = kZeroWord;
        }
      }
    } else {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const bool ok = wbase + i < words;
        st.a[r][i] = ok ? ld_stream(ra[r] + wbase + i) : kZeroWord;
        st.b[r][i] = ok ? ld_stream(rb[r] + wbase + i) : kZeroWord;
      }
    }
  }
}

} // namespace bitnet_cuda
