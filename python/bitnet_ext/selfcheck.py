"""Self-check: every op on one device against bitnet_ext.reference on the CPU.

Used by ``python -m bitnet_ext`` so a user can tell in seconds whether the
installed build computes the right thing on their machine. The reference runs
on the CPU whatever the device checked: its float32 matmuls must be float32
(MLX's CUDA backend computes float32 matmuls in TF32 by default).
"""

from dataclasses import dataclass
from typing import Callable, List, Tuple, Union, cast

import mlx.core as mx

from . import _ops, reference
from . import _ext


# A check returns (passed, detail).
Check = Callable[[], Tuple[bool, str]]


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str


def _random_ternary(n: int, k: int, key: mx.array) -> mx.array:
    return mx.random.randint(-1, 2, (n, k), key=key).astype(mx.int8)


def _max_rel_error(ours: mx.array, ref: mx.array) -> float:
    ours32, ref32 = ours.astype(mx.float32), ref.astype(mx.float32)
    # item() is typed int | float | complex; a float32 scalar gives a float.
    return cast(float, (mx.abs(ours32 - ref32).max() / mx.maximum(mx.abs(ref32).max(), 1e-30)).item())


def _cases(device: Union[mx.Device, mx.Stream]) -> List[Tuple[str, Check]]:
    """(name, check) pairs; each check returns (passed, detail)."""
    keys = mx.random.split(mx.random.key(0), 4)
    N, K, M = 96, 2560, 5
    codes = _random_ternary(N, K, keys[0])
    wq = reference.pack(codes)
    scale_t = mx.array(0.37)
    scale_r = mx.random.uniform(0.1, 1.0, (N,), key=keys[1])
    x = mx.random.normal((2, M, K), key=keys[2])
    g = mx.random.normal((2, M, N), key=keys[3])
    s = device

    def exact(ours: mx.array, ref: mx.array) -> Tuple[bool, str]:
        equal = bool(mx.array_equal(ours, ref).item())
        return equal, "bit-exact" if equal else "differs"

    def close(ours: mx.array, ref: mx.array, tol: float) -> Tuple[bool, str]:
        err = _max_rel_error(ours, ref)
        return err <= tol, f"max rel err {err:.1e} (tol {tol:.0e})"

    cases: List[Tuple[str, Check]] = [
        ("pack", lambda: exact(_ops.pack(codes, stream=s), wq)),
        ("unpack", lambda: exact(_ext.unpack(wq, stream=s), codes)),
        ("dequantize", lambda: exact(_ext.dequantize(wq, scale_r, dtype=mx.float32, stream=s),
                                     reference.dequantize(wq, scale_r, dtype=mx.float32))),
        ("absmean_quantize", lambda: exact(_ext.absmean_quantize(x[0, :, :], per_channel=True, stream=s)[0],
                                           reference.absmean_quantize(x[0], per_channel=True)[0])),
        ("absmax_quantize", lambda: exact(_ext.absmax_quantize(x, stream=s)[0], reference.absmax_quantize(x)[0])),
    ]

    def dtype_cases(dtype: mx.Dtype) -> List[Tuple[str, Check]]:
        # One call per dtype, so each check captures its own xd, tol and dtype.
        xd = x.astype(dtype)
        tol = {mx.float32: 1e-5, mx.float16: 2e-3, mx.bfloat16: 1e-2}[dtype]
        name = str(dtype).split(".")[-1]
        return [
            (f"ternary_matmul {name}", lambda: close(
                _ext.ternary_matmul(xd, wq, scale_r, stream=s), reference.ternary_matmul(xd, wq, scale_r), tol)),
            (f"ternary_matmul.T {name}", lambda: close(
                _ext.ternary_matmul(g.astype(dtype), wq, scale_t, transpose=False, stream=s),
                reference.ternary_matmul(g.astype(dtype), wq, scale_t, transpose=False), tol)),
            (f"bitlinear {name}", lambda: exact(
                _ext.bitlinear(xd, wq, scale_r, stream=s), reference.bitlinear(xd, wq, scale_r))),
        ]

    for dtype in (mx.float32, mx.float16, mx.bfloat16):
        cases += dtype_cases(dtype)
    grad_ours = mx.grad(lambda v: _ext.ternary_matmul(v, wq, scale_r, stream=s).sum())(x)
    grad_ref = mx.grad(lambda v: reference.ternary_matmul(v, wq, scale_r).sum())(x)
    cases.append(("grad ternary_matmul", lambda: close(grad_ours, grad_ref, 1e-5)))
    return cases


def run_self_check(
    device: Union[mx.Device, mx.Stream], progress: Callable[[str], None] = lambda s: None
) -> List[CheckResult]:
    results = []
    # Our ops name `device`; everything else (inputs, the reference) runs on the CPU.
    with mx.stream(mx.cpu):
        for name, check in _cases(device):
            try:
                passed, detail = check()
            except Exception as error:  # report, don't stop: the user wants the full picture
                passed, detail = False, f"{type(error).__name__}: {error}"
            results.append(CheckResult(name, bool(passed), detail))
            progress(f"  {'ok  ' if passed else 'FAIL'} {name:28s} {detail}")
    return results
