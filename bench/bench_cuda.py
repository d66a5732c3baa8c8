#!/usr/bin/env python
"""NVIDIA-GPU benchmark of bitnet_ext inside MLX's CUDA backend, side by side
with MLX's own matmuls, on BitNet b1.58 layer shapes, plus a whole-model run.

    python bench/bench_cuda.py                      # everything: JSON + markdown under bench/results/
    python bench/bench_cuda.py --quick              # one shape, M in {1, 512}, no model
    python bench/bench_cuda.py --json a.json --md a.md --shapes 2560x2560 --M 1,8 --no-model

Layers (all on the GPU, activations bfloat16, weights W = s * codes in {-1, 0, 1}):
  ternary_matmul  bx.ternary_matmul(x, wq, s)              ours, 2-bit packed ternary weights
  bitlinear       bx.bitlinear(x, wq, s)                   ours, W1.58A8 (int8 activations, exact)
  bf16            x @ W.T, W dense bfloat16                 MLX (cuBLAS)
  q4 / q2         mx.quantized_matmul(x, *mx.quantize(W, group_size=64, bits=4 / 2))   MLX affine
for (N, K) in 2560x2560 (q/o), 6912x2560 (gate/up), 2560x6912 (down), 17408x5120
and M in {1, 8, 32, 128, 512, 2048}.

Timing: one measurement evaluates 32 calls in one mx.eval (as a model's layer
stack runs), each on its own copy of the weights, so the weights come from
HBM, not from L2; the median over repeats of (wall time / 32) is reported
(bench/_gpu_timing.py). The copy-bandwidth probe times an elementwise copy of
1 GiB (bytes read + written / time) in the same run; "% copy BW" is a method's
weight bytes per second (packed bytes for ours) against it.

Checks, outside timing: bitlinear bit-exact against bitnet_ext.reference (CPU)
for M <= 32, every method within quantization error of the float product
otherwise.

Model (--model, default on): a random BitNet b1.58 2B-4T-shaped checkpoint
(bench/bitnet_2b4t_shaped.py) through bitnet_ext.mlx_lm (float and int8
activations), beside a llama of the same shapes in MLX bfloat16 and 4-bit
(random weights), each through mlx-lm's generate_step on the GPU:
prefill tok/s of a 512-token prompt, decode tok/s of 128 tokens, after a
warm-up generation with the same prompt length (--model-runs picks the runs:
float / int8 activations, each also with q/k/v and gate/up fused by
bitnet_ext.fused, and the bf16 / 4-bit llama).

Without an NVIDIA GPU (no CUDA backend in MLX, or bitnet_ext built without
CUDA kernels) it prints why and exits with status 0 (1 with --require-gpu).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from _gpu_timing import copies, rel_err, time_batched  # noqa: E402

SHAPES = {  # "NxK": (N, K)
    "2560x2560": (2560, 2560),
    "6912x2560": (6912, 2560),
    "2560x6912": (2560, 6912),
    "17408x5120": (17408, 5120),
}
ALL_MS = [1, 8, 32, 128, 512, 2048]
METHODS = ["ternary_matmul", "bitlinear", "bf16", "q4", "q2"]
OURS = ("ternary_matmul", "bitlinear")
CALLS_PER_EVAL = 32
GROUP = 64
SCALE = 0.02


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def gpu_status() -> tuple[bool, str]:
    """(usable, why not) for MLX's CUDA GPU with bitnet_ext's CUDA kernels."""
    import mlx.core as mx

    import bitnet_ext as bx

    if not (hasattr(mx, "cuda") and mx.cuda.is_available()):
        return False, "MLX has no usable CUDA GPU here (install mlx[cuda13] on a machine with an NVIDIA GPU)"
    if bx._ext.GPU_BACKEND != "cuda":
        return False, f"bitnet_ext was built without CUDA kernels (GPU_BACKEND={bx._ext.GPU_BACKEND!r})"
    return True, ""


def describe_gpu() -> dict:
    import mlx.core as mx

    info = {"mlx": mx.__version__, "host": socket.gethostname()}
    try:
        q = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                            "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = q.stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        info["nvidia_smi"] = f"unavailable: {e}"
    try:
        info["device_info"] = {k: str(v) for k, v in mx.device_info(mx.gpu).items()}
    except Exception as e:  # older MLX
        info["device_info"] = f"unavailable: {e}"
    return info


def weight_bytes(method: str, N: int, K: int) -> int:
    """Bytes of one layer's weights in a method's format (what one call must read)."""
    groups = N * (K // GROUP)
    return {
        "ternary_matmul": N * K // 4 + 4,
        "bitlinear": N * K // 4 + 4,
        "bf16": 2 * N * K,
        "q4": N * K // 2 + 2 * 2 * groups,  # codes + bf16 scale and bias per group
        "q2": N * K // 4 + 2 * 2 * groups,
    }[method]


def copy_bandwidth(reps: int = 10) -> dict:
    """GB/s of an elementwise copy of 1 GiB (bytes read + bytes written per second)."""
    import mlx.core as mx

    a = mx.random.uniform(shape=(1 << 28,))  # float32, 1 GiB
    mx.eval(a)
    per = []
    for i in range(reps + 2):
        mx.synchronize()
        t0 = time.perf_counter()
        b = mx.abs(a)
        mx.eval(b)
        if i >= 2:
            per.append(time.perf_counter() - t0)
        del b
    per.sort()
    med = per[len(per) // 2]
    return {"bytes": 2 * a.nbytes, "median_ms": med * 1e3, "GBps": 2 * a.nbytes / med / 1e9,
            "best_GBps": 2 * a.nbytes / per[0] / 1e9}


def _layer_calls(N, K, codes_np, methods):
    """{method: (call(x, w), weight array, float weights it stands for)} for one (N, K)."""
    import mlx.core as mx

    import bitnet_ext as bx
    from bitnet_ext import reference as ref

    codes = mx.array(codes_np)
    wq = ref.pack(codes)
    s32 = mx.array(SCALE, dtype=mx.float32)
    W = (codes.astype(mx.float32) * SCALE).astype(mx.bfloat16)
    mx.eval(wq, W)
    calls = {}
    if "ternary_matmul" in methods:
        calls["ternary_matmul"] = (lambda x, w: bx.ternary_matmul(x, w, s32, stream=mx.gpu), wq, W)
    if "bitlinear" in methods:
        calls["bitlinear"] = (lambda x, w: bx.bitlinear(x, w, s32, stream=mx.gpu), wq, W)
    if "bf16" in methods:
        calls["bf16"] = (lambda x, w: mx.matmul(x, w.T, stream=mx.gpu), W, W)
    for bits in (4, 2):
        m = f"q{bits}"
        if m in methods:
            # MLX's affine format cannot hold 0 exactly at 4 or 2 bits with a per-group bias of -s:
            # checked against the weights it does hold.
            q, scales, biases = mx.quantize(W, group_size=GROUP, bits=bits)
            held = mx.dequantize(q, scales, biases, group_size=GROUP, bits=bits)
            mx.eval(q, scales, biases, held)
            calls[m] = ((lambda S, B, b: lambda x, w: mx.quantized_matmul(
                x, w, S, B, transpose=True, group_size=GROUP, bits=b, stream=mx.gpu))(scales, biases, bits), q, held)
    return calls, wq, s32


def _check(method, y, x, w_float, wq, s32, M):
    """(ok, max relative error) of one output, outside timing."""
    import mlx.core as mx

    from bitnet_ext import reference as ref

    if method == "bitlinear" and M <= 32:
        with mx.stream(mx.cpu):
            r = ref.bitlinear(x, wq, s32)
            mx.eval(r)
        exact = bool(mx.array_equal(y, r).item())
        return exact, 0.0 if exact else rel_err(y, r)
    with mx.stream(mx.gpu):
        r = x.astype(mx.float32) @ w_float.astype(mx.float32).T
        mx.eval(r)
    err = rel_err(y, r)
    # bf16 outputs; int8 activations (bitlinear) and 2-bit affine groups add their rounding
    return err < 5e-2, err


def run_shape(key, Ms, methods, args, results, checks):
    import mlx.core as mx
    import numpy as np

    N, K = SHAPES[key]
    rng = np.random.default_rng(N * 7 + K)
    codes_np = rng.integers(-1, 2, size=(N, K), dtype=np.int8)
    calls, wq, s32 = _layer_calls(N, K, codes_np, methods)
    for method, (call, w, w_float) in calls.items():
        wb = weight_bytes(method, N, K)
        w_sets = copies(w, args.calls)
        for M in Ms:
            x = (mx.random.normal((M, K), key=mx.random.key(M)) * 2).astype(mx.bfloat16)
            mx.eval(x)
            case = {"shape": key, "N": N, "K": K, "M": M, "method": method}
            try:
                with warnings.catch_warnings(record=True) as rec:
                    warnings.simplefilter("always")
                    y = call(x, w_sets[0])
                    mx.eval(y)
                fell_back = [str(m.message) for m in rec if "CPU" in str(m.message)]
                if fell_back:
                    raise RuntimeError(f"ran on the CPU, not the GPU: {fell_back[0]}")
                ok, err = _check(method, y, x, w_float, wq, s32, M)
                checks.append({**case, "ok": ok, "max_rel_err": err})
                if not ok:
                    _log(f"  CHECK FAILED {method} M={M} {key}: max rel err {err:.3e}")
                sets = [(x, ws) for ws in w_sets]
                mx.synchronize()
                t0 = time.perf_counter()
                mx.eval([call(*a) for a in sets])
                one = time.perf_counter() - t0
                reps = max(3, min(args.reps, math.ceil(args.budget_s / max(one, 1e-6))))
                t = time_batched(call, sets, reps, warmup=1)
            except Exception as e:
                _log(f"  {method} M={M} {key}: {type(e).__name__}: {e}")
                results.append({**case, "error": f"{type(e).__name__}: {e}"})
                continue
            sec = t["median_ms"] / 1e3
            res = {**case, **t, "weight_bytes": wb, "weight_GBps": wb / sec / 1e9,
                   "TOPs": 2.0 * M * N * K / sec / 1e12}
            if args.copy_GBps:
                res["pct_copy_bw"] = 100.0 * res["weight_GBps"] / args.copy_GBps
            results.append(res)
            _log(f"  {method:15s} M={M:<5d} {key:10s} {1e3 * t['median_ms']:10.1f} us  "
                 f"{res['weight_GBps']:8.1f} GB/s weights  {res['TOPs']:7.2f} TOP/s")
        del w_sets


# ---------------------------------------------------------------------------
# Whole model


def _llama_like(config: dict, bits: int | None):
    """mlx-lm's llama with the 2B-4T shapes, random weights, bfloat16 (or quantized to `bits`)."""
    import mlx.core as mx
    import mlx.nn as nn
    from mlx_lm.models import llama

    args = llama.ModelArgs(
        model_type="llama", hidden_size=config["hidden_size"], num_hidden_layers=config["num_hidden_layers"],
        intermediate_size=config["intermediate_size"], num_attention_heads=config["num_attention_heads"],
        num_key_value_heads=config["num_key_value_heads"], rms_norm_eps=1e-5, vocab_size=config["vocab_size"],
        rope_theta=config.get("rope_theta", 500000.0), tie_word_embeddings=True)
    model = llama.Model(args)
    model.set_dtype(mx.bfloat16)
    if bits is not None:
        nn.quantize(model, group_size=GROUP, bits=bits)
    mx.eval(model.parameters())
    return model


MODEL_RUNS = ["float", "int8", "float-fused", "int8-fused", "bf16", "q4"]
MODEL_NAMES = {
    "float": "bitnet_ext, float acts",
    "int8": "bitnet_ext, int8 acts",
    "float-fused": "bitnet_ext, float acts, fused q/k/v, gate/up",
    "int8-fused": "bitnet_ext, int8 acts, fused q/k/v, gate/up",
    "bf16": "llama, MLX bf16",
    "q4": "llama, MLX 4-bit",
}


def run_model(args) -> dict:
    import mlx.core as mx
    import numpy as np
    from mlx.utils import tree_flatten

    from bench_model import run_generation
    from bitnet_2b4t_shaped import CONFIG_2B4T, write_bitnet_2b4t_shaped
    from bitnet_ext import mlx_lm as bx_mlx_lm

    mx.set_default_device(mx.gpu)
    prompt = np.random.default_rng(0).integers(3, CONFIG_2B4T["vocab_size"], args.prompt).tolist()
    runs = []

    def breakdown(model, steps=32):
        """Per decode step: ms to build the lazy graph in Python, ms of mx.eval (encoding + GPU, synchronous)."""
        from mlx_lm.models.cache import make_prompt_cache

        cache = make_prompt_cache(model)
        logits = model(mx.array(prompt)[None], cache=cache)
        tok = mx.argmax(logits[:, -1], axis=-1)
        mx.eval(tok)
        build = run = 0.0
        for _ in range(steps):
            t0 = time.perf_counter()
            tok = mx.argmax(model(tok[:, None], cache=cache)[:, -1], axis=-1)
            t1 = time.perf_counter()
            mx.eval(tok)
            t2 = time.perf_counter()
            build, run = build + t1 - t0, run + t2 - t1
        return {"build_ms": 1e3 * build / steps, "eval_ms": 1e3 * run / steps}

    def measure(key, model):
        wbytes = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        # Warm-up at the measured prompt length: the first prefill at a new
        # length pays first-use costs (kernel loading, MLX's JIT of new
        # shapes, CUDA graph instantiation); a short warm-up left them in the
        # measured prefill (10x slower for float activations). Its numbers are
        # kept as "cold_*".
        cold = run_generation(model, prompt, 3)
        r = run_generation(model, prompt, args.decode)
        r.update(model=MODEL_NAMES[key], run=key, weight_bytes=wbytes, cold_prefill_tok_s=cold["prefill_tok_s"])
        r["step"] = breakdown(model)
        runs.append(r)
        _log(f"  {r['model']:45s} prefill {r['prefill_tok_s']:9.0f} tok/s (cold {cold['prefill_tok_s']:7.0f})  "
             f"decode {r['decode_tok_s']:7.1f} tok/s  (step unpipelined: build {r['step']['build_ms']:.2f} ms, "
             f"eval {r['step']['eval_ms']:.2f} ms)")

    wanted = [k for k in MODEL_RUNS if k in args.model_runs]
    ours = [k for k in wanted if k in ("float", "int8", "float-fused", "int8-fused")]
    if ours:
        with tempfile.TemporaryDirectory(prefix="bitnet-2b4t-") as d:
            t = time.perf_counter()
            write_bitnet_2b4t_shaped(d)
            _log(f"wrote the 2B-4T-shaped checkpoint in {time.perf_counter() - t:.0f} s")
            for key in ours:  # a model of its own each: runs do not inherit each other's state
                model, _ = bx_mlx_lm.load(d, fuse=key.endswith("fused"),
                                          activation_bits=8 if key.startswith("int8") else None)
                measure(key, model)
                del model
                mx.clear_cache()
    for key in [k for k in wanted if k in ("bf16", "q4")]:
        model = _llama_like(CONFIG_2B4T, None if key == "bf16" else 4)
        measure(key, model)
        del model
    return {"prompt_tokens": args.prompt, "decode_tokens": args.decode, "runs": runs,
            "env": {k: v for k, v in os.environ.items() if k.startswith("BITNET_EXT_")}}


# ---------------------------------------------------------------------------
# Report


def _index(results):
    return {(r["shape"], r["M"], r["method"]): r for r in results if "error" not in r}


def markdown(report: dict) -> str:
    idx = _index(report["results"])
    copy = report["copy_bandwidth"]
    lines = [
        "# bitnet_ext on an NVIDIA GPU (MLX CUDA backend)",
        "",
        f"{report['date']}, {report['machine'].get('nvidia_smi', '')}, MLX {report['machine']['mlx']}. "
        f"{report['calls_per_eval']} calls per mx.eval, each on its own weight copy; median time per call.",
        f"Copy-bandwidth probe: {copy['GBps']:.0f} GB/s (1 GiB elementwise copy, read + write).",
        "" if report.get("complete", True) else "**Partial run** (cut short): the shapes measured so far.",
        "",
        "Time per call in microseconds; in brackets, ours against the baseline (x = baseline time / our time).",
        "",
        "| shape (NxK) | M | ternary_matmul | bitlinear | bf16 | q4 | q2 | bitlinear vs bf16 / q4 / q2 "
        "| ternary_matmul vs bf16 | best ours % copy BW |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]

    def us(r):
        return f"{1e3 * r['median_ms']:.1f}" if r else "-"

    for key in report["shapes"]:
        for M in report["Ms"]:
            row = {m: idx.get((key, M, m)) for m in METHODS}
            if not any(row.values()):
                continue

            def x(ours, base):
                a, b = row.get(ours), row.get(base)
                return f"{b['median_ms'] / a['median_ms']:.2f}x" if a and b else "-"

            ours = [row[m] for m in OURS if row.get(m)]
            best = max((r.get("pct_copy_bw", 0) for r in ours), default=0)
            lines.append(
                f"| {key} | {M} | {us(row['ternary_matmul'])} | {us(row['bitlinear'])} | {us(row['bf16'])} "
                f"| {us(row['q4'])} | {us(row['q2'])} | {x('bitlinear', 'bf16')} / {x('bitlinear', 'q4')} / "
                f"{x('bitlinear', 'q2')} | {x('ternary_matmul', 'bf16')} | {best:.0f}% |")
    bad = [c for c in report["checks"] if not c["ok"]]
    errors = [r for r in report["results"] if "error" in r]
    lines += ["", f"Checks: {len(report['checks']) - len(bad)} of {len(report['checks'])} passed"
              + (f"; FAILED: {[(c['method'], c['shape'], c['M']) for c in bad]}" if bad else "") + "."]
    if errors:
        lines.append(f"Errors: {[(r['method'], r['shape'], r['M'], r['error']) for r in errors]}")
    model = report.get("model")
    if model:
        lines += ["", f"## Whole model: 2B-4T shapes, prompt {model['prompt_tokens']}, "
                      f"{model['decode_tokens']} decoded tokens (mlx-lm generate_step)", "",
                  "After a warm-up generation at the same prompt length (its prefill: \"cold\").", "",
                  "Decode step unpipelined (32 steps after the prompt, one mx.eval each): ms to build the lazy "
                  "graph in Python, ms of the synchronous mx.eval (MLX encoding the graph + the GPU running it); "
                  "generate_step overlaps the next step's build with the current eval.", "",
                  "| model | weights GB | prefill tok/s | cold prefill tok/s | decode tok/s | step build ms "
                  "| step eval ms |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in model["runs"]:
            cold = r.get("cold_prefill_tok_s")
            step = r.get("step", {})
            lines.append(f"| {r['model']} | {r['weight_bytes'] / 1e9:.2f} | {r['prefill_tok_s']:.0f} "
                         f"| {f'{cold:.0f}' if cold else '-'} | {r['decode_tok_s']:.1f} "
                         f"| {step.get('build_ms', float('nan')):.2f} | {step.get('eval_ms', float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma list of " + ", ".join(SHAPES))
    ap.add_argument("--M", default=",".join(map(str, ALL_MS)), help="comma list of batch rows")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--calls", type=int, default=CALLS_PER_EVAL, help="calls (weight copies) per mx.eval")
    ap.add_argument("--reps", type=int, default=10, help="most timed evals per case")
    ap.add_argument("--budget-s", type=float, default=0.5, help="aim for this much timed work per case")
    ap.add_argument("--quick", action="store_true", help="2560x2560, M in {1, 512}, no model")
    ap.add_argument("--no-model", dest="model", action="store_false", help="skip the whole-model run")
    ap.add_argument("--no-shapes", dest="run_shapes", action="store_false", help="skip the layer-shape table")
    ap.add_argument("--model-runs", default=",".join(MODEL_RUNS), help="comma list of " + ", ".join(MODEL_RUNS))
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--json", default=None, help="default bench/results/cuda-<host>.json")
    ap.add_argument("--md", default=None, help="default next to the JSON")
    ap.add_argument("--require-gpu", action="store_true", help="exit 1 without a usable NVIDIA GPU")
    args = ap.parse_args(argv)
    if args.quick:
        args.shapes, args.M, args.model = "2560x2560", "1,512", False
    args.shapes = args.shapes.split(",")
    unknown = [s for s in args.shapes if s not in SHAPES]
    if unknown:
        ap.error(f"unknown shapes {unknown}; choose from {list(SHAPES)}")
    args.Ms = [int(m) for m in args.M.split(",")]
    args.model_runs = args.model_runs.split(",")
    if set(args.model_runs) - set(MODEL_RUNS):
        ap.error(f"unknown model runs {sorted(set(args.model_runs) - set(MODEL_RUNS))}; choose from {MODEL_RUNS}")
    if not args.run_shapes:
        args.shapes = []
    args.methods = args.methods.split(",")
    if set(args.methods) - set(METHODS):
        ap.error(f"unknown methods {sorted(set(args.methods) - set(METHODS))}; choose from {METHODS}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    ok, why = gpu_status()
    if not ok:
        print(f"bench_cuda: {why}; nothing measured.")
        return 1 if args.require_gpu else 0
    import mlx.core as mx

    t0 = time.time()
    machine = describe_gpu()
    copy = copy_bandwidth()
    args.copy_GBps = copy["GBps"]
    _log(f"copy bandwidth {copy['GBps']:.0f} GB/s (best {copy['best_GBps']:.0f})")
    results, checks = [], []
    report = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine, "calls_per_eval": args.calls, "shapes": args.shapes, "Ms": args.Ms,
        "copy_bandwidth": copy, "results": results, "checks": checks,
    }
    out = args.json or os.path.join(HERE, "results", f"cuda-{socket.gethostname()}.json")
    md_path = args.md or os.path.splitext(out)[0] + ".md"

    def save(complete: bool) -> str:
        """Writes the report so far (a run cut short by a time limit keeps what it measured)."""
        report["complete"] = complete
        report["elapsed_s"] = time.time() - t0
        with open(out, "w") as f:
            json.dump(report, f, indent=1)
        md = markdown(report)
        with open(md_path, "w") as f:
            f.write(md)
        return md

    for key in args.shapes:
        _log(f"{key}:")
        run_shape(key, args.Ms, args.methods, args, results, checks)
        mx.clear_cache()
        save(False)
    if args.model:
        report["model"] = run_model(args)
    print(save(True))
    return 0 if all(c["ok"] for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
