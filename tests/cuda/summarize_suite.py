"""summary.json of a tests/cuda/run_suite_on_gpu.sh run: build, GPU tests, the
whole suite on the GPU, the benchmark's exit status.

Usage: python3 tests/cuda/summarize_suite.py LOG_DIR > summary.json
(exit 1 unless the build and every test that ran passed, and the benchmark's checks)
"""

import json
import pathlib
import sys

from summarize import junit, rc, read


def main():
    logs = pathlib.Path(sys.argv[1])
    s = {"label": "bitnet_ext CUDA build inside MLX's CUDA backend (NVIDIA GPU)",
         "gpu": read(logs / "gpu.txt").strip(),
         "import": read(logs / "import.log").strip()}
    build = read(logs / "build.log")
    s["build_rc"] = rc(build, "build_rc")
    s["build_seconds"] = rc(build, "seconds")
    s["cuda_detected"] = "MLX has a CUDA backend" in build
    s["gpu_tests"] = junit(logs / "gpu.xml", logs / "pytest_gpu.log")
    groups = sorted(logs.glob("pytest_suite_*.log"))
    suite = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failed": [], "rc": []}
    for g in range(len(groups)):
        part = junit(logs / f"suite_{g}.xml", logs / f"pytest_suite_{g}.log")
        for k in ("tests", "failures", "errors", "skipped"):
            suite[k] += part.get(k, 0)
        suite["failed"] += part.get("failed", [])
        suite["rc"].append(part.get("rc"))
    s["suite_gpu_default"] = suite
    s["harness_build_rc"] = rc(read(logs / "harness_build.log"), "harness_build_rc")
    s["harness_tests"] = junit(logs / "harness.xml", logs / "pytest_harness.log")
    bench = read(logs / "bench.log")
    if bench:
        s["bench_rc"] = rc(bench, "bench_rc")
    tests_ran = (logs / "pytest_gpu.log").exists()  # SUITE=0: build and benchmark only
    tests_ok = (s["gpu_tests"].get("rc") == 0 and suite["rc"] and all(r == 0 for r in suite["rc"])
                and s["harness_tests"].get("rc") == 0)
    ok = (s["build_rc"] == 0 and s["cuda_detected"] and (tests_ok or not tests_ran)
          and s.get("bench_rc", 0) == 0)
    s["ok"] = bool(ok)
    print(json.dumps(s, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
