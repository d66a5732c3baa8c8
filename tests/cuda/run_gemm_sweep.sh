#!/usr/bin/env bash
# The prefill GEMM work on the lent GPU, in one command: builds the CUDA target of the shader
# harness and the package (in parallel), then on a quiet GPU
#   1. bench/cuda_mma_sweep.py: every GEMM variant (plan, mma_t<i>) per shape and M, beside cuBLAS,
#   2. bench/bench_cuda.py --no-model on the prefill M (ours vs MLX bf16 / q4 / q2 inside MLX),
# then the tests at once: tests/test_cuda_kernels.py (every variant vs the reference), memcheck over
# tests/cuda/cuda_kernel_cases.py, and test_gpu / test_bitlinear / test_ternary_matmul (and test_mlx_lm /
# test_fused / test_nn) with the GPU as MLX's default device.
#
#   device tool, carry [".cuda-bundle"]:  bash tests/cuda/run_gemm_sweep.sh
#   SWEEP_ARGS / BENCH_ARGS: extra options; SWEEP=0 / BENCH=0 / TESTS=0 skip a step; TEST_TIMEOUT seconds;
#   PACKAGE=0: build the harness only (sweep, kernel tests and memcheck).
# $OUT gets sweep.json/.md, bench_cuda.json/.md, pytest_{kernels,gpu,models}.log, memcheck.log, logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/bitnet_gemm_sweep}
LOGS=$(mktemp -d)
mkdir -p "$DEST"
t0=$(date +%s)
stamp() { echo "$1 at $(( $(date +%s) - t0 )) s"; }
finish() {
  tar czf "$DEST/logs.tar.gz" -C "$LOGS" .
}
trap finish EXIT
eval "$(bash .cuda-bundle/install.sh)"
py=$(command -v python3)
nv=/opt/mlx-cuda/site/nvidia
( cmake -S csrc/harness/cuda -B build/cuda -G Ninja -DPython_EXECUTABLE="$py" > "$LOGS/harness_build.log" 2>&1 &&
  cmake --build build/cuda -j8 >> "$LOGS/harness_build.log" 2>&1 ) & hb=$!
if [ "${PACKAGE:-1}" = "0" ]; then
  ( exit 1 ) & pb=$!  # the harness only: no MLX-side bench or tests
else
  ( CMAKE_BUILD_PARALLEL_LEVEL=8 python3 -m pip install --no-build-isolation --no-deps --no-index -v . \
      -Cbuild-dir=build/cuda-pkg -Ccmake.define.CUDNN_INCLUDE_PATH=$nv/cudnn/include \
      -Ccmake.define.CUDNN_LIBRARY_PATH=$nv/cudnn/lib/libcudnn.so.9 > "$LOGS/build.log" 2>&1 ) & pb=$!
fi
wait $hb; hrc=$?; wait $pb; prc=$?
stamp "builds harness=$hrc package=$prc"
[ $hrc -ne 0 ] && tail -n 30 "$LOGS/harness_build.log"
[ $prc -ne 0 ] && tail -n 30 "$LOGS/build.log"
export BITNET_METAL_CUDA_DIR=$PWD/build/cuda

if [ "${SWEEP:-1}" != "0" ] && [ $hrc -eq 0 ]; then
  # shellcheck disable=SC2086
  timeout "${SWEEP_TIMEOUT:-200}" python3 bench/cuda_mma_sweep.py "$DEST/sweep.json" "$DEST/sweep.md" ${SWEEP_ARGS:-} \
    > "$LOGS/sweep.log" 2>&1
  stamp "sweep rc=$?"
  cat "$DEST/sweep.md" 2>/dev/null || tail -n 20 "$LOGS/sweep.log"
fi
if [ "${BENCH:-1}" != "0" ] && [ $prc -eq 0 ]; then
  # shellcheck disable=SC2086
  ( cd /tmp && timeout "${BENCH_TIMEOUT:-200}" python3 "$OLDPWD/bench/bench_cuda.py" --no-model \
      --shapes 2560x2560,6912x2560,2560x6912,17408x5120 --M 128,512,2048 \
      --json "$DEST/bench_cuda.json" --md "$DEST/bench_cuda.md" ${BENCH_ARGS:-} > "$LOGS/bench.log" 2>&1 )
  stamp "bench rc=$?"
  grep -E "^\|" "$DEST/bench_cuda.md" 2>/dev/null || tail -n 20 "$LOGS/bench.log"
fi
if [ "${TESTS:-1}" != "0" ]; then
  if [ $hrc -eq 0 ]; then
    ( timeout "${TEST_TIMEOUT:-240}" python3 -m pytest tests/test_cuda_kernels.py --noconftest -p no:cacheprovider -q -rs \
        > "$DEST/pytest_kernels.log" 2>&1
      echo "pytest_rc=$?" >> "$DEST/pytest_kernels.log" ) &
    ( timeout "${TEST_TIMEOUT:-200}" compute-sanitizer --tool memcheck --error-exitcode 3 --leak-check no --print-limit 20 \
        python3 tests/cuda/cuda_kernel_cases.py > "$DEST/memcheck.log" 2>&1
      echo "memcheck_rc=$?" >> "$DEST/memcheck.log" ) &
  fi
  if [ $prc -eq 0 ]; then
    ( BITNET_EXT_REQUIRE_GPU=1 BITNET_EXT_TEST_DEVICE=gpu timeout "${TEST_TIMEOUT:-240}" python3 .github/scripts/pytest_device.py \
        tests/test_gpu.py tests/test_bitlinear.py tests/test_ternary_matmul.py -q -rs -p no:cacheprovider \
        > "$DEST/pytest_gpu.log" 2>&1
      echo "pytest_rc=$?" >> "$DEST/pytest_gpu.log" ) &
    # the models and modules built on them (prefill goes through the GEMMs)
    ( BITNET_EXT_TEST_DEVICE=gpu timeout "${TEST_TIMEOUT:-240}" python3 .github/scripts/pytest_device.py \
        tests/test_mlx_lm.py tests/test_fused.py tests/test_nn.py -q -rs -p no:cacheprovider \
        > "$DEST/pytest_models.log" 2>&1
      echo "pytest_rc=$?" >> "$DEST/pytest_models.log" ) &
  fi
  wait
  stamp "tests"
  tail -q -n 3 "$DEST"/pytest_*.log "$DEST/memcheck.log" 2>/dev/null
fi
