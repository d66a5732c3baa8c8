"""summary.json of a tests/cuda/run_on_gpu.sh run: build, GPU tests, sanitizers, kernel coverage, timing.

Usage: python3 tests/cuda/summarize.py OUT_DIR   (exit 1 unless everything passed)
"""

import json
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[2]


def rc(text, key):
    m = re.search(rf"{key}=(\d+)", text)
    return int(m.group(1)) if m else None


def read(path):
    return path.read_text(errors="replace") if path.exists() else ""


def instantiated_kernels():
    """Host names of every [[kernel]] instantiation in kernels/*.metal, from the sources."""
    sys.path.insert(0, str(ROOT / "build" / "cuda"))
    try:
        import _metal_cuda as C

        return sorted(name for name, path in C.kernel_sources() if pathlib.Path(path).parent == ROOT / "kernels")
    except Exception:
        return []


def junit(xml, log):
    """Counts of a pytest run (its JUnit XML and log)."""
    tests = {}
    if xml.exists():
        suite = ET.parse(xml).getroot()
        suite = suite.find("testsuite") if suite.tag == "testsuites" else suite
        for k in ("tests", "failures", "errors", "skipped"):
            tests[k] = int(suite.get(k, 0))
        tests["seconds"] = float(suite.get("time", 0))
        tests["failed"] = [c.get("name") for c in suite.iter("testcase")
                           if c.find("failure") is not None or c.find("error") is not None][:50]
    tests["rc"] = rc(read(log), "pytest_rc")
    return tests


def main():
    out = pathlib.Path(sys.argv[1])
    s = {"label": "kernels/*.metal on an NVIDIA GPU through the CUDA shim (NVIDIA, not Apple)",
         "gpu": read(out / "gpu.txt").strip()}
    s["build_rc"] = rc(read(out / "build.log"), "build_rc")
    s["gpu_tests"] = junit(out / "pytest.xml", out / "pytest.log")
    s["gpu_tests_mem_flags_check_build"] = junit(out / "pytest_check.xml", out / "pytest_check.log")
    tests, tests_check = s["gpu_tests"], s["gpu_tests_mem_flags_check_build"]
    san = {}
    for tool in ("memcheck", "racecheck", "synccheck", "initcheck"):
        text = read(out / f"sanitizer_{tool}.log")
        # racecheck: "RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
        m = re.search(r"ERROR SUMMARY: (\d+) error", text) or re.search(r"\((\d+) errors?, \d+ warning", text)
        hazards = re.search(r"RACECHECK SUMMARY: (\d+) hazard", text)
        san[tool] = {"rc": rc(text, "sanitizer_rc"), "errors": int(m.group(1)) if m else None,
                     "hazards": int(hazards.group(1)) if hazards else None,
                     "workload": (re.search(r"plan_cases: .*", text) or [None])[0]}
    s["sanitizers"] = san
    all_kernels = instantiated_kernels()
    executed = set(read(out / "executed.txt").split())
    s["kernels"] = {"instantiated": len(all_kernels), "executed_by_gpu_tests": len(executed & set(all_kernels)),
                    "not_executed": sorted(set(all_kernels) - executed)}
    timing = out / "timing.json"
    s["timing_rows"] = len(json.loads(timing.read_text())["rows"]) if timing.exists() else 0
    ok = (s["build_rc"] == 0
          and all(t.get("rc") == 0 and t.get("failures") == 0 and t.get("errors") == 0 for t in (tests, tests_check))
          and all(v["rc"] == 0 and v["errors"] == 0 and not v["hazards"] for v in san.values())
          and all_kernels and not s["kernels"]["not_executed"])
    s["all_passed"] = bool(ok)
    (out / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    print(json.dumps(s, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
