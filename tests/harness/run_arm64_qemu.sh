#!/usr/bin/env bash
# Cross-compiles the CPU shader harness self-test (bnh_selftest: every launch
# plan, three fiber orders) for arm64 with Debian's aarch64-linux-gnu-g++, runs
# it under qemu-user (this exercises the arm64 fiber context switch), and
# requires the digest of all outputs to equal the native x86-64 build's.
# Needs: g++-aarch64-linux-gnu qemu-user (see tests/cpp/run_aarch64_qemu.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
JOBS=${JOBS:-2}
NATIVE=${NATIVE_BUILD_DIR:-build/harness-selftest}
ARM=${ARM_BUILD_DIR:-build/harness-arm64}

cmake -S csrc/harness -B "$NATIVE" -DBITNET_HARNESS_PYTHON=OFF >/dev/null
cmake --build "$NATIVE" -j"$JOBS" --target bnh_selftest

mkdir -p "$ARM"
cat > "$ARM/toolchain.cmake" <<'TC'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
TC
cmake -S csrc/harness -B "$ARM" -DCMAKE_TOOLCHAIN_FILE="$PWD/$ARM/toolchain.cmake" -DBITNET_HARNESS_PYTHON=OFF >/dev/null
cmake --build "$ARM" -j"$JOBS" --target bnh_selftest

native=$("$NATIVE/bnh_selftest" "$@" | tail -n 1)
arm=$(qemu-aarch64 -L /usr/aarch64-linux-gnu "$ARM/bnh_selftest" "$@" | tail -n 1)
echo "x86-64: $native"
echo "arm64:  $arm"
[ "$native" = "$arm" ] || { echo "arm64 and x86-64 harness outputs differ"; exit 1; }
