#!/usr/bin/env bash
# Builds the CPU shader harness self-test with clang (the Metal compiler is
# clang-based, so clang's stricter C++ front end catches template and lookup
# mistakes in kernels/ that g++ lets through; -Wall -Wextra must stay quiet),
# runs it, and requires the digest of all outputs to equal the g++ build's.
# clang < 15 has no _Float16 on x86-64: BNH_SOFT_HALF uses a binary16 struct.
# Needs: clang (apt-get install clang).
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-2}
GCC_DIR=${GCC_BUILD_DIR:-build/harness-selftest}
CLANG_DIR=${CLANG_BUILD_DIR:-build/harness-clang}

cmake -S csrc/harness -B "$GCC_DIR" -DBITNET_HARNESS_PYTHON=OFF >/dev/null
cmake --build "$GCC_DIR" -j"$JOBS" --target bnh_selftest
CXX=clang++ CXXFLAGS="-DBNH_SOFT_HALF -Wextra -Werror -Wno-unused-parameter -Wno-unknown-attributes" \
  cmake -S csrc/harness -B "$CLANG_DIR" -DBITNET_HARNESS_PYTHON=OFF >/dev/null
cmake --build "$CLANG_DIR" -j"$JOBS" --target bnh_selftest

gcc_out=$("$GCC_DIR/bnh_selftest" "$@" | tail -n 1)
clang_out=$("$CLANG_DIR/bnh_selftest" "$@" | tail -n 1)
echo "g++:   $gcc_out"
echo "clang: $clang_out"
[ "$gcc_out" = "$clang_out" ] || { echo "clang and g++ harness outputs differ"; exit 1; }
