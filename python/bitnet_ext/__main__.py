"""`python -m bitnet_ext`: self-check every op on the default device, then a
short benchmark on BitNet b1.58 2B-4T layer shapes. `--json` for machine output.
`python -m bitnet_ext convert SRC DST` converts a Hugging Face BitNet checkpoint.
"""

import argparse
import json
import platform
import sys

import mlx.core as mx

from . import __version__, cpu
from . import convert as _convert
from .quickbench import format_table, run_quick_bench
from .selfcheck import run_self_check


def _device_description(device) -> str:
    if device.type == mx.cpu:
        return f"cpu ({platform.machine()}, ISA {cpu.active_isa()}, {cpu.num_threads()} threads)"
    return str(device)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bitnet_ext", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--no-bench", action="store_true", help="run the self-check only")
    parser.add_argument("--repeats", type=int, default=10, help="timed repeats per case (median reported)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _convert.add_subparser(commands)
    args = parser.parse_args(argv)
    if args.command is not None:
        return args.func(args)

    device = mx.default_device()
    say = (lambda s: None) if args.json else (lambda s: print(s, flush=True))
    say(f"bitnet_ext {__version__} on mlx {mx.__version__}, default device: {_device_description(device)}")
    say("Self-check against bitnet_ext.reference:")
    checks = run_self_check(device, progress=say)
    failed = [c for c in checks if not c.passed]
    say(f"{len(checks) - len(failed)}/{len(checks)} checks passed")

    rows = []
    if not args.no_bench:
        say("Benchmark (BitNet b1.58 2B-4T shapes, hot weights, one call + mx.eval each, so small calls include "
            "MLX's per-eval cost; bitlinear speedup = baseline time / bitlinear time):")
        rows = run_quick_bench(device, repeats=args.repeats, progress=say)
        say(format_table(rows))

    if args.json:
        print(json.dumps({
            "version": __version__, "mlx": mx.__version__, "device": _device_description(device),
            "checks": [c.__dict__ for c in checks], "benchmark": rows,
        }, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
