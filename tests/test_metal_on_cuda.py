"""The Metal shaders (kernels/*.metal) on an NVIDIA GPU: the CUDA target of the shader harness.

nvcc compiles the unmodified shaders through csrc/harness/cuda/msl_cuda.h; the
_metal_cuda module launches them with the shared launch plans
(csrc/gpu/launch_plan.h). This file runs every case of
tests/test_metal_harness.py on it: that file is executed a second time with the
CUDA module injected as its ``H`` (the fiber-harness self-tests, which need
fiber orders and deliberately broken kernels, stay CPU-only). The reference is
computed on the CPU (float64 available), so integer paths and the absmean scale
are compared exactly. Each case runs three times on the GPU and must give the
same bytes every time (a race shows up as a difference).

Skipped without an NVIDIA GPU or without the module: tests/cuda/run_on_gpu.sh
builds it and runs this file (and compute-sanitizer) on the lent GPU machine.
"""

import importlib
import os
import pathlib
import shutil
import subprocess
import sys
import types

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _nvidia_gpu():
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    r = subprocess.run([smi, "-L"], capture_output=True, text=True)
    return r.returncode == 0 and "GPU" in r.stdout


def _import_cuda_target():
    d = os.environ.get("BITNET_METAL_CUDA_DIR") or str(ROOT / "build" / "cuda")
    if not list(pathlib.Path(d).glob("_metal_cuda*")):
        return None
    sys.path.insert(0, d)
    return importlib.import_module("_metal_cuda")


if not _nvidia_gpu():
    pytest.skip("no NVIDIA GPU here: the CUDA target runs through tests/cuda/run_on_gpu.sh on a GPU machine",
                allow_module_level=True)
_cuda = _import_cuda_target()
if _cuda is None:
    pytest.skip("the CUDA target is not built: cmake -S csrc/harness/cuda -B build/cuda && cmake --build build/cuda",
                allow_module_level=True)

import mlx.core as mx  # noqa: E402

# The reference on the CPU: MLX's GPU backends have no float64.
mx.set_default_device(mx.cpu)

def test_cuda_target_is_the_gpu():
    assert _cuda.device_name(), "no CUDA device name"


# Defined after the test above, so the suite's coverage check stays the last test.
_suite = types.ModuleType("metal_suite_on_cuda")
_suite.__file__ = str(ROOT / "tests" / "test_metal_harness.py")
_suite.H = _cuda
exec(compile(pathlib.Path(_suite.__file__).read_text(), _suite.__file__, "exec"), _suite.__dict__)

for _name, _value in list(vars(_suite).items()):
    # test_harness_*: the fiber harness's self-tests (its testdata/ kernels, fiber orders): CPU only.
    if _name.startswith("test_") and not _name.startswith("test_harness_"):
        globals()[_name] = _value

