"""The README's API example runs as written (docs that match the code)."""

import pathlib

import mlx.core as mx

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_example_runs():
    text = README.read_text()
    start = text.index("```python\nimport mlx.core as mx\nimport bitnet_ext as bx")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    y, g, y8 = namespace["y"], namespace["g"], namespace["y8"]
    mx.eval(y, g, y8)
    assert y.shape == (4, 2560) and g.shape == (4, 2560) and y8.dtype == mx.float16
    assert namespace["wq"].dtype == mx.uint32 and namespace["codes_again"].shape == (2560, 2560)
