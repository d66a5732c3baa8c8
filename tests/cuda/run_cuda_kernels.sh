#!/usr/bin/env bash
# The hand-written CUDA kernels on the lent GPU, in one command: builds the
# CUDA target of the harness (csrc/harness/cuda, which holds them beside the
# shim), runs tests/test_cuda_kernels.py and tests/test_metal_on_cuda.py,
# compute-sanitizer memcheck over every variant (tests/cuda/cuda_kernel_cases.py,
# beside the tests), then the timing bench/cuda_kernels_vs_shim.py (alone on
# the GPU). Logs and results to $OUT.
#
#   device tool, carry [".cuda-bundle"]:  bash tests/cuda/run_cuda_kernels.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/bitnet_cuda_kernels_out}
mkdir -p "$DEST"
eval "$(bash .cuda-bundle/install.sh)"
start=$(date +%s)
cmake -S csrc/harness/cuda -B build/cuda -G Ninja -DPython_EXECUTABLE="$(command -v python3)" > "$DEST/build.log" 2>&1 &&
  cmake --build build/cuda -j"$(nproc)" >> "$DEST/build.log" 2>&1
build_rc=$?
echo "build_rc=$build_rc seconds=$(( $(date +%s) - start ))" | tee -a "$DEST/build.log"
[ $build_rc -ne 0 ] && { tail -n 40 "$DEST/build.log"; exit 1; }
export BITNET_METAL_CUDA_DIR=$PWD/build/cuda

( timeout 240 compute-sanitizer --tool memcheck --error-exitcode 3 --leak-check no --print-limit 20 \
    python3 tests/cuda/cuda_kernel_cases.py > "$DEST/memcheck.log" 2>&1
  echo "memcheck_rc=$?" >> "$DEST/memcheck.log" ) &
timeout 300 python3 -m pytest tests/test_cuda_kernels.py tests/test_metal_on_cuda.py --noconftest -p no:cacheprovider \
  -q -rs -x --junitxml="$DEST/pytest.xml" > "$DEST/pytest.log" 2>&1
echo "pytest_rc=$?" >> "$DEST/pytest.log"
tail -n 15 "$DEST/pytest.log"
wait
tail -n 4 "$DEST/memcheck.log"
echo "tests+memcheck seconds=$(( $(date +%s) - start ))"
timeout 200 python3 bench/cuda_kernels_vs_shim.py "$DEST/bench.json" "$DEST/bench.md" > "$DEST/bench.log" 2>&1
echo "bench_rc=$? seconds=$(( $(date +%s) - start ))"
head -n 45 "$DEST/bench.md"
