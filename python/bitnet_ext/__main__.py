"""Self-check every op against bitnet_ext.reference on the default device, then a
short benchmark on BitNet b1.58 2B-4T layer shapes (a few seconds; --full adds
MLX's slow CPU baselines at M = 128). `convert SRC DST` converts a Hugging Face
BitNet checkpoint.
"""

import argparse
import json
import platform
import sys
from typing import List, Optional

import mlx.core as mx

from . import __version__, cpu
from ._compat import mlx_version
from . import convert as _convert
from .quickbench import format_header, format_row, run_quick_bench
from .selfcheck import run_self_check


def _device_description(device: mx.Device) -> str:
    if device.type == mx.cpu:
        return f"cpu ({platform.machine()}, ISA {cpu.active_isa()}, {cpu.num_threads()} threads)"
    return str(device)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def main(argv: Optional[List[str]] = None, prog: str = "bitnet-ext") -> int:
    # prog: the console script is `bitnet-ext`; `python -m bitnet_ext` passes its own name.
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-bench", action="store_true", help="run the self-check only")
    parser.add_argument("--full", action="store_true",
                        help="also time MLX's float and 2-bit CPU matmuls at M=128 (about 30 s on 2 cores)")
    parser.add_argument("--repeats", type=_positive_int, default=10, help="timed repeats per case (median reported)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _convert.add_subparser(commands)
    args = parser.parse_args(argv)
    if args.command is not None:
        return args.func(args)

    device = mx.default_device()
    # Text goes to stdout; with --json, stdout holds only the JSON and progress goes to stderr.
    out = sys.stderr if args.json else sys.stdout

    def say(line: str) -> None:
        print(line, file=out, flush=True)

    say(f"bitnet_ext {__version__} on mlx {mlx_version()}, default device: {_device_description(device)}")
    say("Self-check against bitnet_ext.reference:")
    checks = run_self_check(device, progress=say)
    failed = [c for c in checks if not c.passed]
    say(f"{len(checks) - len(failed)}/{len(checks)} checks passed")

    rows = []
    if not args.no_bench:
        say("\nBenchmark, 2B-4T layer shapes: median ms per call (hot weights, one call + mx.eval each)"
            + ("" if args.full else "; MLX baselines at M=1 only, --full for all"))
        say(format_header())
        rows = run_quick_bench(device, repeats=args.repeats, full=args.full, progress=lambda r: say(format_row(r)),
                               note=say)

    if args.json:
        print(json.dumps({
            "version": __version__, "mlx": mlx_version(), "device": _device_description(device),
            "checks": [c.__dict__ for c in checks], "benchmark": rows,
        }, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m bitnet_ext"))
