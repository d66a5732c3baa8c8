"""The README (and the docs' Python examples) run as written: docs that match the code.

Every ```python block runs in a fresh interpreter and every ```bash block in bash,
in document order, in one scratch directory that has the checkout's examples/.
Two things differ from a user's run, both spelled out here: `.venv/bin/` means
this interpreter's venv, and the Hugging Face model (a 1.2 GB download; the
test machines are offline) is replaced by the tiny checkpoint of
examples/tiny_bitnet.py in the same layout. The setup commands are not run here:
.ci/run runs them verbatim, which test_setup_commands_are_what_ci_runs checks.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS_WITH_EXAMPLES = [ROOT / "docs" / name for name in ("api.md", "layers.md", "models.md")]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```$", re.S | re.M)
HUB_MODEL = "microsoft/bitnet-b1.58-2B-4T"
README_MAX_LINES = 200


def blocks(path):
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(path.read_text())]


def setup_block():
    (setup,) = [code for lang, code in blocks(README) if "pip install '.[test]'" in code]
    return setup


def offline(code, tiny):
    """The two substitutions of the module docstring."""
    code = code.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    code = re.sub(rf"\S*hf download {re.escape(HUB_MODEL)} --local-dir (\S+)", rf"cp -r {tiny} \1", code)
    return code.replace(HUB_MODEL, str(tiny))


def run_blocks(path, tmp_path, langs=("python", "bash")):
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    tiny = tmp_path / "tiny-hub-model"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, str(ROOT / "examples" / "tiny_bitnet.py"), str(tiny)], check=True, env=env,
                   capture_output=True)  # fmt: skip
    outputs = []
    for lang, code in blocks(path):
        if lang not in langs or code == setup_block():
            continue
        cmd = [sys.executable, "-c"] if lang == "python" else ["bash", "-euo", "pipefail", "-c"]
        proc = subprocess.run([*cmd, offline(code, tiny)], cwd=work, env=env, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"{path.name} block failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
        assert proc.stdout.strip(), f"{path.name} block prints nothing:\n{code}"
        outputs.append(proc.stdout)
    return outputs


def test_readme_blocks_run(tmp_path):
    pytest.importorskip("mlx_lm", reason="the README's model section needs mlx-lm (pip install '.[mlx-lm]')")
    out = "\n".join(run_blocks(README, tmp_path))
    assert "weights: 25 MiB float32 -> 1.56 MiB packed" in out and "max relative difference: 0.0079" in out
    assert "inference logits identical: True" in out
    assert "Generation: 8 tokens" in out


@pytest.mark.parametrize("doc", DOCS_WITH_EXAMPLES, ids=lambda p: p.name)
def test_docs_python_blocks_run(doc, tmp_path):
    assert any(lang == "python" for lang, _ in blocks(doc)), f"{doc.name} has no python example"
    out = "\n".join(run_blocks(doc, tmp_path, langs=("python",)))  # their shell lines name placeholder paths
    expected = {"api.md": "(2560, 160) mlx.core.uint32 True", "layers.md": "to_inference keeps the outputs: True",
                "models.md": "(2560, 160) mlx.core.uint32"}[doc.name]
    assert expected in out, out


def test_setup_commands_are_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in setup_block().splitlines() if line.strip()]
    assert len(commands) == 2
    ci_lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    first = ci_lines.index(commands[0])
    # README command 2 follows command 1 with nothing in between but `step` banners.
    between = [line for line in ci_lines[first + 1 : ci_lines.index(commands[1])] if not line.startswith("step ")]
    assert between == []


def test_readme_is_for_users():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    assert not re.search(r"\bissue #?\d+", text, re.I)
    assert "## Input validation and numerics" in text
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert link.startswith("http") or (ROOT / link).exists(), f"README links to a missing file: {link}"
