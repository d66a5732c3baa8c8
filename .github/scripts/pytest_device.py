#!/usr/bin/env python
"""Run pytest with MLX's default device taken from BITNET_EXT_TEST_DEVICE.

    BITNET_EXT_TEST_DEVICE=cpu python .github/scripts/pytest_device.py tests -q
    BITNET_EXT_TEST_DEVICE=gpu python .github/scripts/pytest_device.py tests -q

MLX has no environment variable for its default device, and on a Mac it is
the GPU. GitHub-hosted macOS runners only have a paravirtual GPU on which
custom Metal kernels are not trustworthy, so the hosted job runs the suite on
the CPU; the self-hosted Apple-GPU job runs it on the GPU. This wrapper sets
the default device in the pytest process before any test module is imported.

tests/conftest.py may read the same variable (and should apply it to the
child interpreters its run_python() starts, which do not inherit the default
device); setting it twice is harmless.
"""
import os
import sys

import mlx.core as mx

device = os.environ.get("BITNET_EXT_TEST_DEVICE", "").strip().lower()
if device:
    if device not in ("cpu", "gpu"):
        sys.exit(f"BITNET_EXT_TEST_DEVICE must be 'cpu' or 'gpu', got {device!r}")
    if device == "gpu" and not mx.is_available(mx.gpu):
        sys.exit("BITNET_EXT_TEST_DEVICE=gpu but MLX has no usable GPU on this machine")
    mx.set_default_device(mx.cpu if device == "cpu" else mx.gpu)
print(f"[pytest_device] MLX default device: {mx.default_device()}", flush=True)

import pytest  # noqa: E402

sys.exit(pytest.main(sys.argv[1:]))
