#!/usr/bin/env bash
# bitnet_ext's CUDA backend on an NVIDIA GPU, in one command (the lent GPU
# machine starts bare each time): installs MLX-CUDA from the bundle, builds and
# installs bitnet_ext against it (the build detects MLX's CUDA backend and
# compiles the CUDA kernels), then runs
#   1. tests/test_gpu.py with BITNET_EXT_REQUIRE_GPU=1 (every op on mx.gpu vs
#      the reference; a skip there is a failure),
#   2. the whole suite with the GPU as MLX's default device
#      (.github/scripts/pytest_device.py, BITNET_EXT_TEST_DEVICE=gpu), in
#      parallel groups of test files,
#   3. with BENCH=1, bench/bench_cuda.py (JSON + markdown),
# and writes summary.json (tests/cuda/summarize_suite.py), the logs and the
# bench results to $OUT.
#
#   device tool, carry [".cuda-bundle"]:  bash tests/cuda/run_suite_on_gpu.sh
#   with the benchmark:                   BENCH=1 bash tests/cuda/run_suite_on_gpu.sh
#   (BENCH_ARGS="--quick" for a short one, BENCH_TIMEOUT=seconds, SUITE_TIMEOUT=seconds per group;
#   SUITE=0 BENCH=1: build and benchmark only, when both do not fit in one call)
#   (bundle: ../shared/tools/mlx_cuda_bundle.sh .cuda-bundle, see ../shared/cuda/README.md)
#
# Exit status: 0 when the build and every test passed.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/bitnet_cuda_suite}
LOGS=$(mktemp -d)
mkdir -p "$DEST"
jobs=$(nproc)
finish() {
  python3 tests/cuda/summarize_suite.py "$LOGS" > "$LOGS/summary.json"
  local rc=$?
  cp "$LOGS/summary.json" "$DEST/"
  cat "$LOGS"/pytest_*.log > "$DEST/pytest.log" 2>/dev/null
  cp "$LOGS"/bench_cuda.* "$DEST/" 2>/dev/null
  tar czf "$DEST/logs.tar.gz" -C "$LOGS" .
  cat "$LOGS/summary.json"
  exit $rc
}
trap finish EXIT

eval "$(bash .cuda-bundle/install.sh)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$LOGS/gpu.txt" 2>&1

start=$(date +%s)
# cuDNN (which MLX's CMake config asks for) is found by the build itself
# (cmake/cudnn_paths.cmake); the second try names it, as ../shared/cuda/README.md does.
pip_install() {
  CMAKE_BUILD_PARALLEL_LEVEL=$jobs python3 -m pip install --no-build-isolation --no-deps --no-index -v . \
    -Cbuild-dir=build/cuda-pkg "$@" >> "$LOGS/build.log" 2>&1
}
nv=/opt/mlx-cuda/site/nvidia
pip_install || { echo "retrying with explicit cuDNN paths" >> "$LOGS/build.log";
  pip_install -Ccmake.define.CUDNN_INCLUDE_PATH=$nv/cudnn/include -Ccmake.define.CUDNN_LIBRARY_PATH=$nv/cudnn/lib; }
echo "build_rc=$? seconds=$(( $(date +%s) - start ))" >> "$LOGS/build.log"
# The CUDA target of the shader harness (shares entry.cuh, registry and launch_args with the package),
# built meanwhile for its tests below.
[ "${SUITE:-1}" != "0" ] && ( cmake -S csrc/harness/cuda -B build/cuda -DPython_EXECUTABLE="$(command -v python3)" > "$LOGS/harness_build.log" 2>&1 &&
  cmake --build build/cuda -j"$jobs" >> "$LOGS/harness_build.log" 2>&1
  echo "harness_build_rc=$?" >> "$LOGS/harness_build.log" ) &
harness_build=$!
grep -E "bitnet_ext:|build_rc" "$LOGS/build.log"
( cd /tmp && python3 -c 'import mlx.core as mx, bitnet_ext as bx; print("mlx", mx.__version__, "default", mx.default_device(), "GPU_BACKEND", bx._ext.GPU_BACKEND)' ) \
  > "$LOGS/import.log" 2>&1
cat "$LOGS/import.log"

if [ "${SUITE:-1}" != "0" ]; then
# 1. the GPU tests, skips forbidden
BITNET_EXT_REQUIRE_GPU=1 timeout 300 python3 -m pytest tests/test_gpu.py -q -rs -p no:cacheprovider \
  --junitxml="$LOGS/gpu.xml" > "$LOGS/pytest_gpu.log" 2>&1
echo "pytest_rc=$?" >> "$LOGS/pytest_gpu.log"
tail -n 3 "$LOGS/pytest_gpu.log"

# 2. the whole suite with the GPU as default device, in groups of files at once;
#    beside it, the shader harness's GPU tests (tests/test_metal_on_cuda.py)
wait $harness_build
( BITNET_METAL_CUDA_DIR=$PWD/build/cuda timeout 300 python3 -m pytest tests/test_metal_on_cuda.py --noconftest \
    -p no:cacheprovider -q --junitxml="$LOGS/harness.xml" > "$LOGS/pytest_harness.log" 2>&1
  echo "pytest_rc=$?" >> "$LOGS/pytest_harness.log" ) &
mapfile -t files < <(ls tests/test_*.py | grep -v test_metal_on_cuda)
groups=${SUITE_GROUPS:-8}
for g in $(seq 0 $((groups - 1))); do
  mine=()
  for i in "${!files[@]}"; do
    [ $((i % groups)) -eq "$g" ] && mine+=("${files[$i]}")
  done
  ( BITNET_EXT_TEST_DEVICE=gpu timeout "${SUITE_TIMEOUT:-420}" python3 .github/scripts/pytest_device.py "${mine[@]}" \
      -q -rs -p no:cacheprovider --junitxml="$LOGS/suite_$g.xml" > "$LOGS/pytest_suite_$g.log" 2>&1
    echo "pytest_rc=$?" >> "$LOGS/pytest_suite_$g.log" ) &
done
wait
tail -q -n 2 "$LOGS"/pytest_suite_*.log "$LOGS"/pytest_harness.log
fi

# 3. the benchmark
if [ "${BENCH:-0}" != "0" ]; then
  # shellcheck disable=SC2086  # BENCH_ARGS: extra options, word-split on purpose (e.g. "--quick")
  timeout "${BENCH_TIMEOUT:-300}" python3 bench/bench_cuda.py --json "$LOGS/bench_cuda.json" --md "$LOGS/bench_cuda.md" \
    ${BENCH_ARGS:-} > "$LOGS/bench.log" 2>&1
  echo "bench_rc=$?" >> "$LOGS/bench.log"
  tail -n 40 "$LOGS/bench.log"
fi
