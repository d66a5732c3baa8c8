#!/usr/bin/env bash
# Runs the C++ kernel test under qemu-x86_64 as CPUs without AVX-512
# (Haswell: scalar + avx2) and without AVX (Nehalem: scalar only), checking
# that runtime dispatch never executes code the CPU lacks and that the
# detected levels are the expected ones. Exits non-zero on failure.
# Needs: qemu-user (apt-get install -y qemu-user).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
build="${BUILD_DIR:-$root/build/cpu}"

command -v qemu-x86_64 >/dev/null || { echo "qemu-x86_64 not found (apt-get install -y qemu-user)"; exit 1; }
cmake -S "$root/csrc/cpu" -B "$build" -DCMAKE_BUILD_TYPE=Release -DBITNET_EXT_BUILD_CPU_TESTS=ON >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target test_cpu_kernels
exe="$build/test_cpu_kernels"

status=0
check() { # cpu, expected levels line
  local out
  echo "== qemu-x86_64 -cpu $1"
  if ! out="$(qemu-x86_64 -cpu "$1" "$exe" --quick 2>&1 | grep -v "TCG doesn't support")"; then
    echo "$out" | tail -n 20
    echo "FAILED on -cpu $1"
    status=1
    return
  fi
  echo "$out" | tail -n 2
  echo "$out" | grep -qx "levels: $2" || { echo "FAILED: expected levels: $2"; status=1; }
}
check Haswell "scalar/t1 scalar/t2 avx2/t1 avx2/t2"
check Nehalem "scalar/t1 scalar/t2"

if [ "$status" = 0 ]; then echo "x86 qemu dispatch tests: OK"; else echo "x86 qemu dispatch tests: FAILED"; fi
exit "$status"
