#!/usr/bin/env bash
# Type-checks bitnet_ext's Metal host code (csrc/gpu/metal/*.cpp and the
# Metal branches of csrc/device_fallback.cpp / csrc/gpu/eval_gpu.cpp) on a
# machine without the macOS SDK, against the MLX headers of the installed mlx
# wheel, with a declaration-only metal-cpp stand-in (Metal/Metal.hpp here).
# -fsyntax-only: nothing is linked or run. What this catches: wrong MLX API
# names/signatures, typos, missing includes, type errors. What it cannot
# catch: anything about real Metal behaviour, and calls to MLX functions that
# exist in the headers but are not exported from libmlx (check MLX_API by eye).
#
#   csrc/gpu/metal/typecheck/typecheck.sh [python]     (default: python3)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../../.." && pwd)"
py="${1:-python3}"
mlx_inc="$("$py" -c 'import mlx.core as mx, os; print(os.path.join(os.path.dirname(mx.__file__), "include"))')"
cxx="${CXX:-c++}"
flags=(-std=c++20 -fsyntax-only -Wall -Wextra -Wno-unused-parameter
       -D_METAL_ -DBITNET_EXT_METAL=1
       -DBITNET_EXT_KERNELS_SOURCE_DIR="\"$root/kernels\"" -DBITNET_EXT_MLX_INCLUDE_DIR="\"$mlx_inc\""
       -I"$here" -I"$mlx_inc" -I"$root/csrc" -I"$root/csrc/cpu")
files=(
  "$root/csrc/gpu/metal/library.cpp"
  "$root/csrc/gpu/metal/jit_source.cpp"
  "$root/csrc/gpu/plan_arrays.cpp"
  "$root/csrc/gpu/metal/dispatch.cpp"
  "$root/csrc/gpu/metal/eval_gpu_metal.cpp"
  "$root/csrc/gpu/eval_gpu.cpp"
  "$root/csrc/device_fallback.cpp"
)
status=0
for f in "${files[@]}"; do
  if "$cxx" "${flags[@]}" "$f"; then
    echo "ok   ${f#"$root"/}"
  else
    echo "FAIL ${f#"$root"/}"
    status=1
  fi
done
exit $status
