"""Every script in examples/ runs (offline, on the CPU) and prints what it promises."""

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TESTED = {"quantize_model.py", "train_qat.py", "convert_checkpoint.py", "mlx_lm_bitnet.py", "tiny_bitnet.py"}


def run_example(name, *args, timeout=120):
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=EXAMPLES.parent,
    )  # fmt: skip
    assert proc.returncode == 0, f"{name} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    # transformers' import-time advice to install PyTorch is noise here: the examples need no PyTorch.
    assert "PyTorch was not found" not in proc.stderr, proc.stderr
    return proc.stdout, proc.stderr


def needs(module, why):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed ({why})")


def test_every_example_is_tested():
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


def test_quantize_model():
    out, _ = run_example("quantize_model.py")
    assert "BitLinear(input_dims=256, output_dims=1024" in out and "head): Linear" in out
    assert "round trip: outputs identical" in out


def test_train_qat():
    out, _ = run_example("train_qat.py")
    qat = re.search(r"QAT model: +train loss ([\d.]+), test accuracy ([\d.]+)", out)
    inf = re.search(r"inference model: +train loss ([\d.]+), test accuracy ([\d.]+)", out)
    assert qat and inf, out
    assert float(qat.group(1)) <= 0.30 and float(qat.group(2)) >= 0.75
    assert inf.groups() == qat.groups()
    assert "logits identical after to_inference: True" in out


def test_convert_checkpoint_tiny():
    out, err = run_example("convert_checkpoint.py")
    assert "converted 14 BitNet linear layers (autobitlinear)" in out
    assert "uint8 (32, 64) -> mlx.core.uint32 (128, 4)" in out
    assert "100%" in err  # progress bar


def test_convert_checkpoint_with_paths(tmp_path):
    run_example("tiny_bitnet.py", tmp_path / "src")
    out, _ = run_example("convert_checkpoint.py", tmp_path / "src", tmp_path / "dst", "--quiet")
    assert "converted 14" in out and (tmp_path / "dst" / "config.json").exists()


def test_mlx_lm_bitnet():
    needs("mlx_lm", "pip install '.[mlx-lm]'")
    out, _ = run_example("mlx_lm_bitnet.py", "--max-tokens", "8")
    assert "Generation: 8 tokens" in out and "generated" in out
