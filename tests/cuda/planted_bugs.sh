#!/usr/bin/env bash
# Plants each bug of tests/cuda/planted_bugs/*.patch, one at a time, in a
# scratch copy of the tree, and records which target catches it:
#   fibers  the CPU shader harness (tests/test_metal_harness.py)
#   cuda    the GPU tests (tests/test_metal_on_cuda.py, debug build with the
#           mem_flags check) and compute-sanitizer
#           (memcheck, racecheck, synccheck, initcheck over tests/cuda/plan_cases.py)
# The patches never touch the real tree.
#
#   bash tests/cuda/planted_bugs.sh fibers OUT_DIR     (any Linux machine)
#   bash tests/cuda/planted_bugs.sh cuda OUT_DIR       (GPU machine; after: eval "$(bash .cuda-bundle/install.sh)")
# Writes OUT_DIR/planted_<target>.json and a log per run. Exits 2, naming them, when
# patches do not apply exactly to the tree: when the kernels change, regenerate
# the patch so that it plants the same bug in today's code.
set -uo pipefail
target=$1
dest=$(realpath -m "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$dest"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# tracked and untracked-but-not-ignored files: the tree as it is, without builds
(cd "$root" && { git ls-files -co --exclude-standard 2>/dev/null || find . -type f -not -path './build/*' -not -path './.git/*' -not -path './.venv/*' -not -path './.cuda-bundle/*'; } |
  tar cf - -T - ) | tar xf - -C "$scratch"
cd "$scratch"
py=${PYTHON:-python3}
jobs=$(nproc)

build() {
  if [ "$target" = fibers ]; then
    cmake -S csrc/harness -B build/harness -DPython_EXECUTABLE="$(command -v $py)" > build.log 2>&1 &&
      cmake --build build/harness -j"$jobs" --target _metal_harness >> build.log 2>&1
  else
    # the debug build: kernels with the mem_flags check (it changes nothing else)
    cmake -S csrc/harness/cuda -B build/cuda -DBNC_CHECK_MEM_FLAGS=ON -DPython_EXECUTABLE="$(command -v $py)" \
      > build.log 2>&1 &&
      cmake --build build/cuda -j"$jobs" >> build.log 2>&1
  fi
}

# "caught: <first failure>" or "not caught"
run_tests() {
  local log=$1
  if [ "$target" = fibers ]; then
    BITNET_METAL_HARNESS_DIR=build/harness timeout 900 $py -m pytest tests/test_metal_harness.py -x -q -rf \
      -p no:cacheprovider > "$log" 2>&1
  else
    BITNET_METAL_CUDA_DIR=build/cuda timeout 300 $py -m pytest tests/test_metal_on_cuda.py --noconftest -q -rf \
      -p no:cacheprovider > "$log" 2>&1
  fi
  local rc=$?
  if [ $rc -eq 0 ]; then echo "not caught"; return; fi
  local first
  first=$(grep -m1 -E "^(FAILED|ERROR) " "$log" | cut -c1-300)
  [ -z "$first" ] && first="exit status $rc: $(grep -m1 -E 'Fatal Python error|Error|error' "$log" | cut -c1-200)"
  echo "caught: $first"
}

run_sanitizers() {
  local name=$1 tool found=""
  for tool in memcheck racecheck synccheck initcheck; do
    local extra=() opts=(--tool $tool --error-exitcode 3 --print-limit 5)
    [ $tool = initcheck ] && extra=(--no-garbage)
    [ $tool = memcheck ] && opts+=(--leak-check no)
    ( BITNET_METAL_CUDA_DIR=build/cuda timeout 300 compute-sanitizer "${opts[@]}" $py tests/cuda/plan_cases.py \
        "${extra[@]}" > "$dest/${name}_$tool.log" 2>&1; echo "rc=$?" >> "$dest/${name}_$tool.log" ) &
  done
  wait
  for tool in memcheck racecheck synccheck initcheck; do
    case $(grep -o "^rc=[0-9]*" "$dest/${name}_$tool.log") in
      rc=0) ;;
      rc=3) found="$found $tool" ;;  # --error-exitcode: the tool reported errors
      *) found="$found $tool(workload-failed)" ;;
    esac
  done
  echo "${found:- none}"
}

# A patch that no longer applies plants nothing: its row would read "not
# caught" (or "caught" by a half-applied tree). Every patch must apply to this
# tree exactly (no fuzz) before anything runs; regenerate the stale ones.
stale=""
for p in "$root"/tests/cuda/planted_bugs/*.patch; do
  patch -p1 -s -F0 --dry-run < "$p" > /dev/null 2>&1 || stale="$stale $(basename "$p")"
done
if [ -n "$stale" ]; then
  echo "error: planted-bug patches that do not apply to this tree:$stale" >&2
  exit 2
fi

build || { echo "baseline build failed"; tail -n 40 build.log; exit 1; }
baseline=$(run_tests "$dest/baseline_$target.log")
echo "baseline: $baseline"
json="$dest/planted_$target.json"
echo "{\"target\": \"$target\", \"baseline\": \"$baseline\", \"bugs\": [" > "$json"
sep=""
for p in "$root"/tests/cuda/planted_bugs/*.patch; do
  name=$(basename "$p" .patch)
  patch -p1 -s -F0 < "$p" || { echo "error: $name.patch does not apply" >&2; exit 2; }
  if build; then
    tests=$(run_tests "$dest/${name}_$target.log")
    san=""
    [ "$target" = cuda ] && san=$(run_sanitizers "$name")
  else
    tests="caught: build failed ($(grep -m1 -i error build.log | cut -c1-200))"
    san=""
  fi
  patch -p1 -R -s -F0 < "$p" || { echo "error: $name.patch does not revert" >&2; exit 2; }
  echo "$name | tests: $tests | sanitizers:${san}"
  $py - "$name" "$tests" "$san" "$sep" >> "$json" <<'PY'
import json, sys
name, tests, san, sep = sys.argv[1:]
print(sep + json.dumps({"bug": name, "tests": tests, "sanitizers": san.split()}))
PY
  sep=","
done
echo "]}" >> "$json"
