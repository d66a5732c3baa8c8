"""Controls of the CPU kernels: instruction-set level, threads, and malloc tuning.

The kernels pick the best level this CPU supports (AVX-512 VNNI, AVX-512, AVX2
or scalar on x86-64; NEON with or without dot product on arm64). The
environment variable ``BITNET_EXT_ISA`` or :func:`set_isa` lowers it, e.g. to
test every path on one machine; ``BITNET_EXT_NUM_THREADS`` or
:func:`set_num_threads` sets the threads the kernels split rows over.

On Linux (glibc), importing bitnet_ext keeps freed buffers of up to 64 MiB in
the process heap (and up to 256 MiB of free memory at its top) instead of
returning them to the kernel: a prefill frees and reallocates dozens of
multi-MB activation buffers per layer, each otherwise faulted in again page by
page (a 2B-4T layer's 512-token prefill evaluated alone: 65 -> 46 ms; in
mlx-lm's whole-model loop +2-4%, where glibc adapts its thresholds by itself).
Process-wide, since glibc has one malloc; ``BITNET_EXT_MALLOC_TUNING=0`` before
the import leaves malloc as it is. :func:`malloc_tuned` says which happened.
"""

from contextlib import contextmanager
from typing import Iterator

from . import _ext
from ._ext import active_isa, num_threads, reset_isa, set_isa, set_num_threads, supported_isas

__all__ = [
    "active_isa",
    "malloc_tuned",
    "num_threads",
    "reset_isa",
    "set_isa",
    "set_num_threads",
    "supported_isas",
    "use_isa",
    "use_threads",
]


@contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Run the block with the CPU kernels forced to ISA level ``name``.

    Evaluate results (``mx.eval``) inside the block: MLX is lazy, and the level
    in force when the graph is evaluated is the one that counts.
    """
    previous = active_isa()
    set_isa(name)
    try:
        yield
    finally:
        set_isa(previous)


@contextmanager
def use_threads(n: int) -> Iterator[None]:
    """Run the block with the CPU kernels on ``n`` threads (evaluate inside it)."""
    previous = num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)


def malloc_tuned() -> bool:
    """Whether importing bitnet_ext raised glibc malloc's thresholds (see the module docstring)."""
    return bool(_ext.MALLOC_TUNED)
