"""Importing bitnet_ext keeps large freed buffers in the heap on glibc (bitnet_ext.cpu.malloc_tuned);
BITNET_EXT_MALLOC_TUNING=0 opts out. Each case in a fresh interpreter: the tuning happens at import."""

import os
import platform
import subprocess
import sys

import pytest


def _tuned_in_fresh_process(env_value):
    env = dict(os.environ)
    env.pop("BITNET_EXT_MALLOC_TUNING", None)
    if env_value is not None:
        env["BITNET_EXT_MALLOC_TUNING"] = env_value
    out = subprocess.run(
        [sys.executable, "-c", "import bitnet_ext.cpu as c; print(c.malloc_tuned())"],
        env=env, capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


def test_opt_out_leaves_malloc_alone():
    assert _tuned_in_fresh_process("0") == "False"


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_tuned_by_default_on_glibc():
    assert _tuned_in_fresh_process(None) == "True"
    assert _tuned_in_fresh_process("1") == "True"
