#!/usr/bin/env bash
# The decode path of the CUDA backend on the lent GPU, in one command: builds
# the package (and the harness's CUDA target beside it), runs the tests that
# cover the decode kernels and the fused projections (tests/test_gpu.py with
# BITNET_EXT_REQUIRE_GPU=1, tests/test_fused.py and tests/test_mlx_lm.py on the
# GPU, tests/test_cuda_kernels.py), then times every decode GEMV variant at
# the model's shapes (bench/cuda_gemv_sweep.py) and the whole model
# (bench/bench_cuda.py --no-shapes); with AB=1 also the model with MLX's
# allocator for our outputs (BITNET_EXT_CUDA_MLX_MALLOC=1). Logs and results
# to $OUT.
#
#   device tool, carry [".cuda-bundle"]:  bash tests/cuda/run_decode_bench.sh
#   (SWEEP=0 / KERNELS=0 / MODEL=0 skip a part; MODEL_RUNS=... passes --model-runs)
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/bitnet_decode_bench}
mkdir -p "$DEST"
jobs=$(nproc)
# Only a few files come back from the GPU machine: the logs travel as one archive.
trap 'tar czf "$DEST/logs.tar.gz" -C "$DEST" $(cd "$DEST" && ls *.log *.txt 2>/dev/null) && (cd "$DEST" && rm -f *.log *.txt)' EXIT
eval "$(bash .cuda-bundle/install.sh)"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$DEST/gpu.txt"
start=$(date +%s)
elapsed() { echo "[$(( $(date +%s) - start )) s] $*"; }
nv=/opt/mlx-cuda/site/nvidia
( cmake -S csrc/harness/cuda -B build/cuda -G Ninja -DPython_EXECUTABLE="$(command -v python3)" > "$DEST/harness_build.log" 2>&1 &&
  cmake --build build/cuda -j"$jobs" >> "$DEST/harness_build.log" 2>&1; echo "harness_build_rc=$?" >> "$DEST/harness_build.log" ) &
harness=$!
CMAKE_BUILD_PARALLEL_LEVEL=$jobs python3 -m pip install --no-build-isolation --no-deps --no-index . -Cbuild-dir=build/cuda-pkg \
  -Ccmake.define.CUDNN_INCLUDE_PATH=$nv/cudnn/include -Ccmake.define.CUDNN_LIBRARY_PATH=$nv/cudnn/lib/libcudnn.so.9 \
  > "$DEST/build.log" 2>&1
echo "build_rc=$?" | tee -a "$DEST/build.log"
elapsed "package built"
BITNET_EXT_REQUIRE_GPU=1 timeout 240 python3 -m pytest tests/test_gpu.py -q -x -p no:cacheprovider > "$DEST/pytest_gpu.log" 2>&1
echo "pytest_gpu_rc=$?" >> "$DEST/pytest_gpu.log"; tail -n 2 "$DEST/pytest_gpu.log"
BITNET_EXT_TEST_DEVICE=gpu timeout 200 python3 .github/scripts/pytest_device.py tests/test_fused.py tests/test_mlx_lm.py \
  -q -p no:cacheprovider > "$DEST/pytest_fused.log" 2>&1
echo "pytest_fused_rc=$?" >> "$DEST/pytest_fused.log"; tail -n 2 "$DEST/pytest_fused.log"
elapsed "GPU tests done"
wait $harness
tail -n 1 "$DEST/harness_build.log"
export BITNET_METAL_CUDA_DIR=$PWD/build/cuda
if [ "${KERNELS:-1}" != "0" ]; then
  timeout 240 python3 -m pytest tests/test_cuda_kernels.py --noconftest -p no:cacheprovider -q \
    > "$DEST/pytest_kernels.log" 2>&1
  echo "pytest_kernels_rc=$?" >> "$DEST/pytest_kernels.log"; tail -n 3 "$DEST/pytest_kernels.log"
  elapsed "kernel tests done"
fi
if [ "${SWEEP:-1}" != "0" ]; then
  timeout ${SWEEP_TIMEOUT:-150} python3 bench/cuda_gemv_sweep.py "$DEST/gemv_sweep.json" "$DEST/gemv_sweep.md" --M "${SWEEP_M:-1}" \
    > "$DEST/sweep.log" 2>&1
  echo "sweep_rc=$?" >> "$DEST/sweep.log"; tail -n 1 "$DEST/sweep.log"
  elapsed "sweep done"
fi
if [ "${MODEL:-1}" != "0" ]; then
  timeout 240 python3 bench/bench_cuda.py --no-shapes --json "$DEST/model.json" --md "$DEST/model.md" \
    --model-runs "${MODEL_RUNS:-float,int8,float-fused,int8-fused,bf16,q4}" > "$DEST/model.log" 2>&1
  echo "model_rc=$?" >> "$DEST/model.log"; grep -E "prefill|rc=" "$DEST/model.log"
  elapsed "model done"
  if [ "${AB:-0}" != "0" ]; then
    BITNET_EXT_CUDA_MLX_MALLOC=1 timeout 150 python3 bench/bench_cuda.py --no-shapes --json "$DEST/model_mlx_malloc.json" \
      --md "$DEST/model_mlx_malloc.md" --model-runs float,int8-fused > "$DEST/model_mlx_malloc.log" 2>&1
    grep -E "prefill" "$DEST/model_mlx_malloc.log"; rm -f "$DEST"/model_mlx_malloc.json
    elapsed "A/B done"
  fi
fi
