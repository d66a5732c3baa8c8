"""The CPU settings follow one validated rule whichever way they are given:
threads 1 to max(256, 4 x hardware threads) for set_num_threads and
BITNET_EXT_NUM_THREADS; ISA names case-insensitive for set_isa and
BITNET_EXT_ISA. A failed resize keeps the previous pool."""

import json
import os

import mlx.core as mx
import pytest

import bitnet_ext as bx
from conftest import run_python

MAX_THREADS = max(256, 4 * (os.cpu_count() or 1))


@pytest.mark.parametrize("n", [0, -1, MAX_THREADS + 1, 5000, 2**40, -(2**40)])
def test_set_num_threads_out_of_range(n):
    before = bx.cpu.num_threads()
    with pytest.raises(ValueError, match=rf"(?s)set_num_threads.*1 to {MAX_THREADS}.*got {n}"):
        bx.cpu.set_num_threads(n)
    assert bx.cpu.num_threads() == before


@pytest.mark.parametrize("n", [True, 2.0, "2", None])
def test_set_num_threads_not_an_int(n):
    before = bx.cpu.num_threads()
    with pytest.raises(TypeError, match=r"set_num_threads.*int"):
        bx.cpu.set_num_threads(n)
    assert bx.cpu.num_threads() == before


@pytest.mark.parametrize("value", ["0", "-1", "abc", "2.5", " ", str(MAX_THREADS + 1), "99999999999999999999"])
def test_env_num_threads_invalid_raises_at_import(value):
    proc = run_python("import bitnet_ext", env={"BITNET_EXT_NUM_THREADS": value})
    assert proc.returncode != 0, f"BITNET_EXT_NUM_THREADS={value!r} was accepted"
    assert "BITNET_EXT_NUM_THREADS" in proc.stderr and f"1 to {MAX_THREADS}" in proc.stderr, proc.stderr[-2000:]
    assert "ValueError" in proc.stderr, proc.stderr[-2000:]


@pytest.mark.parametrize("value", ["1", "3", "", str(MAX_THREADS)])
def test_env_num_threads_valid(value):
    code = "import bitnet_ext as bx; print('THREADS', bx.cpu.num_threads())"
    proc = run_python(code, env={"BITNET_EXT_NUM_THREADS": value})
    assert proc.returncode == 0, proc.stderr[-2000:]
    want = int(value) if value else min(os.cpu_count() or 1, MAX_THREADS)
    assert f"THREADS {want}" in proc.stdout, proc.stdout


def test_failed_resize_keeps_previous_pool():
    """Thread creation fails (address-space limit too small for the stacks):
    set_num_threads raises, num_threads() and the kernels keep working."""
    code = r"""
        import json, resource
        import mlx.core as mx
        import bitnet_ext as bx
        bx.cpu.set_num_threads(2)
        mx.random.seed(0)
        x = mx.random.normal((64, 256))
        wq = bx.pack(mx.random.randint(-1, 2, (96, 256)).astype(mx.int8))
        want = bx.ternary_matmul(x, wq, 0.5)
        mx.eval(want)
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/status") as f:
            vm = int(f.read().split("VmSize:")[1].split()[0]) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (96 << 20), hard))  # room for ~10 thread stacks
        try:
            bx.cpu.set_num_threads(200)
            error = None
        except Exception as e:
            error = [type(e).__name__, str(e)]
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        after = bx.cpu.num_threads()
        got = bx.ternary_matmul(x, wq, 0.5)
        same = mx.array_equal(got, want).item()
        bx.cpu.set_num_threads(3)  # and a later resize works
        again = mx.array_equal(bx.ternary_matmul(x, wq, 0.5), want).item()
        print("REPORT " + json.dumps({"error": error, "after": after, "same": same,
                                      "resized": bx.cpu.num_threads(), "again": again}), flush=True)
    """
    proc = run_python(code)
    assert proc.returncode == 0, f"child died (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    line = [x for x in proc.stdout.splitlines() if x.startswith("REPORT ")]
    assert line, proc.stdout + proc.stderr
    rep = json.loads(line[0][len("REPORT ") :])
    assert rep["error"] is not None, f"thread creation did not fail under the limit: {rep}"
    assert rep["error"][0] == "RuntimeError" and "still using 2" in rep["error"][1], rep
    assert rep["after"] == 2, f"num_threads() changed after a failed resize: {rep}"
    assert rep["same"] and rep["again"] and rep["resized"] == 3, rep


@pytest.mark.parametrize("spelling", [str.upper, str.lower, str.title])
def test_isa_names_case_insensitive_both_ways(spelling):
    isa = bx.cpu.supported_isas()[-1]
    name = spelling(isa)
    try:
        bx.cpu.set_isa(name)
        assert bx.cpu.active_isa() == isa
    finally:
        bx.cpu.reset_isa()
    proc = run_python("import bitnet_ext as bx; print('ISA', bx.cpu.active_isa())", env={"BITNET_EXT_ISA": name})
    assert proc.returncode == 0 and f"ISA {isa}" in proc.stdout, proc.stderr[-2000:]


def test_isa_unknown_name_raises_both_ways():
    with pytest.raises(ValueError, match=r"set_isa.*'sse9'"):
        bx.cpu.set_isa("sse9")
    proc = run_python("import bitnet_ext", env={"BITNET_EXT_ISA": "sse9"})
    assert proc.returncode != 0 and "BITNET_EXT_ISA='sse9'" in proc.stderr, proc.stderr[-2000:]


def test_threads_still_work_after_resizes():
    """Each resize replaces the pool; results stay the same on every count."""
    x = mx.random.normal((33, 128), key=mx.random.key(1))
    wq = bx.pack(mx.random.randint(-1, 2, (40, 128), key=mx.random.key(2)).astype(mx.int8))
    old = bx.cpu.num_threads()
    try:
        bx.cpu.set_num_threads(1)
        want = bx.ternary_matmul(x, wq, 1.0)
        mx.eval(want)
        for n in (2, 3, 1, 4, 2):
            bx.cpu.set_num_threads(n)
            assert bx.cpu.num_threads() == n
            assert mx.array_equal(bx.ternary_matmul(x, wq, 1.0), want).item(), n
    finally:
        bx.cpu.set_num_threads(old)
