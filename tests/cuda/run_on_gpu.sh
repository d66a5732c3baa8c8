#!/usr/bin/env bash
# The Metal shaders on an NVIDIA GPU, in one command (the lent GPU machine starts bare each time):
# installs MLX-CUDA from the bundle, builds the CUDA target of the shader harness
# (csrc/harness/cuda), runs tests/test_metal_on_cuda.py, compute-sanitizer
# (memcheck, racecheck, synccheck, initcheck) over every kernel, the per-kernel
# timing, and writes summary.json, the timing table and all logs to $OUT.
#
#   device tool, carry [".cuda-bundle"]:  bash tests/cuda/run_on_gpu.sh
#   (bundle: ../shared/tools/mlx_cuda_bundle.sh .cuda-bundle, see ../shared/cuda/README.md)
#
# Exit status: 0 when the tests passed and every sanitizer reported 0 errors.
set -uo pipefail
cd "$(dirname "$0")/../.."
DEST=${OUT:-/tmp/bitnet_cuda_out}
OUT=$(mktemp -d)  # every log here; DEST gets summary.json, timing.json/.md, pytest.log and logs.tar.gz
mkdir -p "$DEST"
finish() {
  python3 tests/cuda/summarize.py "$OUT"
  local rc=$?
  cp "$OUT"/summary.json "$DEST"/ 2>/dev/null
  cp "$OUT"/timing.json "$OUT"/timing.md "$OUT"/pytest.log "$DEST"/ 2>/dev/null
  tar czf "$DEST/logs.tar.gz" -C "$OUT" .
  exit $rc
}
jobs=$(nproc)

eval "$(bash .cuda-bundle/install.sh)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1

start=$(date +%s)
# The target, and its debug build with the mem_flags check (BNC_CHECK_MEM_FLAGS).
cmake -S csrc/harness/cuda -B build/cuda -DPython_EXECUTABLE="$(command -v python3)" > "$OUT/build.log" 2>&1 &&
  cmake --build build/cuda -j"$jobs" >> "$OUT/build.log" 2>&1 &&
  cmake -S csrc/harness/cuda -B build/cuda-check -DBNC_CHECK_MEM_FLAGS=ON -DPython_EXECUTABLE="$(command -v python3)" \
    >> "$OUT/build.log" 2>&1 &&
  cmake --build build/cuda-check -j"$jobs" >> "$OUT/build.log" 2>&1
build_rc=$?
echo "build_rc=$build_rc seconds=$(( $(date +%s) - start ))" >> "$OUT/build.log"
if [ $build_rc -ne 0 ]; then
  tail -n 60 "$OUT/build.log"
  finish
fi
export BITNET_METAL_CUDA_DIR=$PWD/build/cuda

# compute-sanitizer over every kernel at small shapes (tests/cuda/plan_cases.py),
# the four tools in parallel with the GPU tests (separate processes; nothing
# is timed meanwhile).
for tool in memcheck racecheck synccheck initcheck; do
  extra=()
  [ $tool = initcheck ] && extra=(--no-garbage)
  opts=(--tool $tool --error-exitcode 3 --print-limit 50)
  [ $tool = memcheck ] && opts+=(--leak-check no)
  [ $tool = racecheck ] && opts+=(--racecheck-report all)
  ( timeout 300 compute-sanitizer "${opts[@]}" python3 tests/cuda/plan_cases.py "${extra[@]}" \
      > "$OUT/sanitizer_$tool.log" 2>&1
    echo "sanitizer_rc=$?" >> "$OUT/sanitizer_$tool.log" ) &
done

# The GPU tests (tests/conftest.py needs the compiled bitnet_ext package, which
# this machine does not build: the suite brings its own helpers).
rm -f "$OUT/executed.txt"
BITNET_HARNESS_RECORD="$OUT/executed.txt" timeout 360 python3 -m pytest tests/test_metal_on_cuda.py --noconftest \
  -p no:cacheprovider -q -rs --junitxml="$OUT/pytest.xml" > "$OUT/pytest.log" 2>&1
echo "pytest_rc=$?" >> "$OUT/pytest.log"
tail -n 5 "$OUT/pytest.log"
# the same tests on the debug build (every barrier's mem_flags checked)
BITNET_METAL_CUDA_DIR=$PWD/build/cuda-check timeout 360 python3 -m pytest tests/test_metal_on_cuda.py --noconftest \
  -p no:cacheprovider -q -rs --junitxml="$OUT/pytest_check.xml" > "$OUT/pytest_check.log" 2>&1
echo "pytest_rc=$?" >> "$OUT/pytest_check.log"
tail -n 2 "$OUT/pytest_check.log"
wait
for tool in memcheck racecheck synccheck initcheck; do tail -n 3 "$OUT/sanitizer_$tool.log"; done

timeout 120 python3 bench/cuda_kernel_timing.py "$OUT/timing.json" "$OUT/timing.md" > "$OUT/timing.log" 2>&1
echo "timing_rc=$?" >> "$OUT/timing.log"

finish
