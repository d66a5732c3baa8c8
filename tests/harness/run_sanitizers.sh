#!/usr/bin/env bash
# Runs every launch plan's kernels (kernels/*.metal compiled for the CPU shader
# harness) under AddressSanitizer and UndefinedBehaviorSanitizer, under
# forward, reverse and shuffled fiber orders (bnh_selftest). An out-of-bounds
# access in a shader is reported with its kernels/*.metal line.
#
#   tests/harness/run_sanitizers.sh            # full shape set
#   tests/harness/run_sanitizers.sh --quick    # small shapes only
#
# Environment: BUILD_DIR (default build/harness-san), JOBS (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD_DIR=${BUILD_DIR:-build/harness-san}
JOBS=${JOBS:-2}

cmake -S csrc/harness -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBITNET_HARNESS_SANITIZE=ON >/dev/null
cmake --build "$BUILD_DIR" -j"$JOBS" --target bnh_selftest

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
"$BUILD_DIR/bnh_selftest" "$@"
