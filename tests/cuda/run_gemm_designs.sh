#!/usr/bin/env bash
# The GEMM design run on an NVIDIA GPU, in one command: builds the CUDA target of this
# tree (and its mem_flags debug build) and of an older tree; times the prefill GEMM of the
# older tree (its plan's kernel) and of this one (every tile, bench/cuda_gemm_timing.py)
# while the GPU is quiet; then runs the GPU tests and compute-sanitizer on this tree, as
# run_on_gpu.sh does.
#
#   device tool, carry [".cuda-bundle", OLD]:  bash tests/cuda/run_gemm_designs.sh OLD
#
# An ablation build (this tree with unpadded tiles) is timed at two tiles after them.
# $OUT gets gemm_old.json, gemm_new.json, gemm_nopad.json, gemm.md (the comparison table), then
# summary.json (tests, sanitizers, coverage), pytest.log, steps.log and logs.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/../.."
OLD=$(cd "${1:?usage: run_gemm_designs.sh OLD_TREE}" && pwd)
DEST=${OUT:-/tmp/bitnet_gemm_out}
OUT=$(mktemp -d)
mkdir -p "$DEST"
finish() {
  python3 tests/cuda/summarize.py "$OUT" > /dev/null
  cp "$OUT"/summary.json "$OUT"/pytest.log "$DEST"/ 2>/dev/null
  tar czf "$DEST/logs.tar.gz" -C "$OUT" .
  cat "$OUT"/summary.json 2>/dev/null | head -40
  exit 0
}
eval "$(bash .cuda-bundle/install.sh)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
py=$(command -v python3)
stamp() { echo "$1 at $(( $(date +%s) - t0 )) s" | tee -a "$DEST/steps.log"; }
t0=$(date +%s)

# Three builds at once (the ternary_gemm translation unit is the long pole of each).
build() {  # tree, build dir, extra cmake args...
  local tree=$1 dir=$2; shift 2
  cmake -S "$tree/csrc/harness/cuda" -B "$tree/$dir" -DPython_EXECUTABLE="$py" "$@" && cmake --build "$tree/$dir" -j8
}
build "$PWD" build/cuda > "$OUT/build_new.log" 2>&1 & b1=$!
build "$PWD" build/cuda-check -DBNC_CHECK_MEM_FLAGS=ON > "$OUT/build_check.log" 2>&1 & b2=$!
build "$OLD" build/cuda > "$OUT/build_old.log" 2>&1 & b3=$!
# Ablation: this tree with unpadded tiles (GEMM_PAD_BYTES 0), to time the padding alone.
NOPAD=$(mktemp -d)
cp -r csrc kernels "$NOPAD"/ && sed -i 's/^#define GEMM_PAD_BYTES 16$/#define GEMM_PAD_BYTES 0/' "$NOPAD/kernels/ternary_gemm.h"
grep -q '^#define GEMM_PAD_BYTES 0$' "$NOPAD/kernels/ternary_gemm.h" || echo "nopad: sed did not apply" >> "$OUT/build_nopad.log"
build "$NOPAD" build/cuda >> "$OUT/build_nopad.log" 2>&1 & b4=$!
wait $b1; r1=$?; wait $b2; r2=$?; wait $b3; r3=$?; wait $b4; r4=$?
cat "$OUT/build_new.log" "$OUT/build_check.log" > "$OUT/build.log"
echo "build_rc=$(( r1 | r2 ))" >> "$OUT/build.log"
stamp "builds new=$r1 check=$r2 old=$r3 nopad=$r4"
if [ $r1 -ne 0 ]; then tail -n 40 "$OUT/build_new.log"; finish; fi
export BITNET_METAL_CUDA_DIR=$PWD/build/cuda

# Timing first, on a quiet GPU: the older tree's plan, then every tile of this one (written
# straight to DEST, so a run cut short still brings them back).
if [ $r3 -eq 0 ]; then
  BITNET_METAL_CUDA_DIR=$OLD/build/cuda timeout 60 python3 bench/cuda_gemm_timing.py time "$DEST/gemm_old.json" old \
    --tiles plan > "$OUT/timing_old.log" 2>&1
  stamp "timing old rc=$?"
fi
timeout 90 python3 bench/cuda_gemm_timing.py time "$DEST/gemm_new.json" new > "$OUT/timing_new.log" 2>&1
stamp "timing new rc=$?"
if [ $r4 -eq 0 ]; then
  BITNET_METAL_CUDA_DIR=$NOPAD/build/cuda timeout 40 python3 bench/cuda_gemm_timing.py time "$DEST/gemm_nopad.json" \
    nopad --tiles 32x32,64x64 > "$OUT/timing_nopad.log" 2>&1
  stamp "timing nopad rc=$?"
fi
python3 bench/cuda_gemm_timing.py report "$DEST/gemm.md" "$DEST"/gemm_old.json "$DEST/gemm_new.json" \
  "$DEST/gemm_nopad.json" > /dev/null 2>&1

# GPU tests on both builds and compute-sanitizer over every kernel (plan_cases), in parallel.
for tool in memcheck racecheck synccheck initcheck; do
  extra=()
  [ $tool = initcheck ] && extra=(--no-garbage)
  opts=(--tool $tool --error-exitcode 3 --print-limit 50)
  [ $tool = memcheck ] && opts+=(--leak-check no)
  [ $tool = racecheck ] && opts+=(--racecheck-report all)
  ( timeout 80 compute-sanitizer "${opts[@]}" python3 tests/cuda/plan_cases.py "${extra[@]}" \
      > "$OUT/sanitizer_$tool.log" 2>&1
    echo "sanitizer_rc=$?" >> "$OUT/sanitizer_$tool.log" ) &
done
( BITNET_METAL_CUDA_DIR=$PWD/build/cuda-check timeout 80 python3 -m pytest tests/test_metal_on_cuda.py --noconftest \
    -p no:cacheprovider -q -rs --junitxml="$OUT/pytest_check.xml" > "$OUT/pytest_check.log" 2>&1
  echo "pytest_rc=$?" >> "$OUT/pytest_check.log" ) &
BITNET_HARNESS_RECORD="$OUT/executed.txt" timeout 80 python3 -m pytest tests/test_metal_on_cuda.py --noconftest \
  -p no:cacheprovider -q -rs --junitxml="$OUT/pytest.xml" > "$OUT/pytest.log" 2>&1
echo "pytest_rc=$?" >> "$OUT/pytest.log"
cp "$OUT/pytest.log" "$DEST/"
wait
stamp "tests and sanitizers"
tail -n 3 "$OUT/pytest.log" "$OUT/pytest_check.log"
finish
