"""Controls of the CPU kernels: instruction-set level and threads.

The kernels pick the best level this CPU supports (AVX-512 VNNI, AVX-512, AVX2
or scalar on x86-64; NEON with or without dot product on arm64). The
environment variable ``BITNET_EXT_ISA`` or :func:`set_isa` lowers it, e.g. to
test every path on one machine; ``BITNET_EXT_NUM_THREADS`` or
:func:`set_num_threads` sets the threads the kernels split rows over.
"""

from contextlib import contextmanager
from typing import Iterator

from ._ext import active_isa, num_threads, reset_isa, set_isa, set_num_threads, supported_isas

__all__ = [
    "active_isa",
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
