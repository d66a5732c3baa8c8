"""Checks that the compiled extension can be loaded next to the installed mlx.

The extension links libmlx from the mlx wheel and uses its C++ ABI, so the
runtime mlx must be exactly the version it was built against; a mismatch shows
up as undefined symbols or silent memory corruption, never as a clean error.
"""

import mlx.core as mx

from ._build_config import MLX_BUILD_REQUIREMENT, MLX_BUILD_VERSION


def mlx_version() -> str:
    """The runtime mlx's version (read at each call: tests monkeypatch it)."""
    # mlx.core's stub does not declare __version__, which the compiled module sets.
    return mx.__version__  # type: ignore[attr-defined]


def check_mlx_version() -> None:
    runtime = mlx_version()
    if runtime != MLX_BUILD_VERSION:
        raise ImportError(
            f"bitnet_ext was built against mlx {MLX_BUILD_VERSION} but mlx {runtime} is "
            f"installed; the two must match exactly. Install mlx=={MLX_BUILD_VERSION} "
            f"(on Linux: '{MLX_BUILD_REQUIREMENT}=={MLX_BUILD_VERSION}') or rebuild bitnet_ext "
            "against the installed mlx (pip install --no-build-isolation .)."
        )
