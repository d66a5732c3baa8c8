"""bitnet_ext: packed ternary (BitNet b1.58) kernels for MLX.

Weights in {-1, 0, +1} are packed 16 per uint32 in MLX's affine ``bits=2``
layout (code = w + 1, least-significant bits first along K). Every op is an
MLX primitive evaluated by this package's own C++ kernels, lazy like any MLX
op, and has a pure-MLX twin in :mod:`bitnet_ext.reference`.
"""

# mlx.core must be loaded first: it brings libmlx, which the extension links.
# _compat imports it; nothing but the public API is bound in this namespace.
from ._compat import check_mlx_version as _check_mlx_version

_check_mlx_version()

from . import _ext, convert, cpu, nn, reference  # noqa: E402
from ._ext import (  # noqa: E402
    absmax_quantize,
    absmean_quantize,
    attention,
    bitlinear,
    dense_matmul,
    dequantize,
    int8_matmul,
    relu2_mul,
    rms_norm,
    rope,
    ternary_matmul,
    unpack,
)
from ._ops import fake_quantize, pack  # noqa: E402
from .reference import int8_quantize_rows  # noqa: E402  (pure MLX, run once at load time)

__version__ = "0.1.0"

__all__ = [
    "absmax_quantize",
    "absmean_quantize",
    "attention",
    "bitlinear",
    "convert",
    "cpu",
    "dense_matmul",
    "dequantize",
    "fake_quantize",
    "int8_matmul",
    "int8_quantize_rows",
    "nn",
    "pack",
    "reference",
    "relu2_mul",
    "rms_norm",
    "rope",
    "ternary_matmul",
    "unpack",
]

# Fail at import, not inside a kernel, when BITNET_EXT_ISA names a level this
# CPU cannot run or BITNET_EXT_NUM_THREADS is not a valid thread count
# (reading it starts no threads).
cpu.active_isa()
cpu.num_threads()
