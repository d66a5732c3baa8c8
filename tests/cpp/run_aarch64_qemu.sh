#!/usr/bin/env bash
# Cross-compiles the CPU kernels and their C++ test for arm64 with Debian's
# aarch64-linux-gnu-g++ and runs the test under qemu-user:
#   -cpu max         : neon + neon_dot (qemu emulates the dot product)
#   -cpu cortex-a57  : neon only (checks that neon_dot is not detected)
# plus BITNET_EXT_ISA forcing each level. Exits non-zero on any failure.
# Needs: g++-aarch64-linux-gnu qemu-user (installed with apt-get if missing).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$root/build/cpu-aarch64}"
jobs="${JOBS:-2}"

if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  echo "installing g++-aarch64-linux-gnu qemu-user"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y g++-aarch64-linux-gnu qemu-user >/dev/null ||
    { $SUDO apt-get update >/dev/null && $SUDO apt-get install -y g++-aarch64-linux-gnu qemu-user >/dev/null; }
fi

mkdir -p "$build"
cat > "$build/toolchain.cmake" <<'TC'
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
TC

cmake -S "$root/csrc/cpu" -B "$build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$build/toolchain.cmake" -DBITNET_EXT_BUILD_CPU_TESTS=ON >/dev/null
cmake --build "$build" -j "$jobs" --target test_cpu_kernels
exe="$build/test_cpu_kernels"
file "$exe" | grep -q "ARM aarch64" || { echo "not an aarch64 binary: $exe"; exit 1; }

status=0
run() {
  echo "== $*"
  if ! "$@"; then
    echo "FAILED: $*"
    status=1
  fi
}

# All levels the emulated CPU supports (scalar, neon, neon_dot on -cpu max).
out="$(qemu-aarch64 -cpu max "$exe" --quick)" || status=1
echo "$out" | tail -n 3
echo "$out" | grep -q "neon_dot/t2" || { echo "FAILED: neon_dot not detected on -cpu max"; status=1; }
# Without the dot product extension only scalar and neon may be listed.
out="$(qemu-aarch64 -cpu cortex-a57 "$exe" --quick)" || status=1
echo "$out" | tail -n 3
if echo "$out" | grep -q "neon_dot"; then
  echo "FAILED: neon_dot detected on a CPU without dotprod"
  status=1
fi
echo "$out" | grep -q "neon/t2" || { echo "FAILED: neon not detected on cortex-a57"; status=1; }
# The full test (large shapes, K >= 16384 worst cases); the test itself
# forces every supported level (scalar, neon, neon_dot) with set_isa().
run qemu-aarch64 -cpu max "$exe"
# The environment override is honoured at startup.
run env BITNET_EXT_ISA=neon qemu-aarch64 -cpu max "$exe" --quick

if [ "$status" = 0 ]; then echo "aarch64 qemu tests: OK"; else echo "aarch64 qemu tests: FAILED"; fi
exit "$status"
