#!/usr/bin/env python
"""Whole-model CPU benchmark: a BitNet b1.58 2B-4T-shaped model through bitnet_ext.mlx_lm.

    python bench/bench_model.py [--model-dir DIR] [--threads 1,2] [--acts float,int8]
                                [--prompt 512] [--decode 128] [--out bench/results/model-NAME] [--fuse]

Builds the random 2B-4T-shaped checkpoint (bench/bitnet_2b4t_shaped.py, ~1.2 GB,
no download) in a temporary directory unless --model-dir names one, loads it
with bitnet_ext.mlx_lm.load, and for each thread count and activation mode
(float: mlx-lm's float activations; int8: BitNet b1.58 int8 activations) runs
mlx-lm's own generate_step on a random prompt:

  prefill tok/s = prompt tokens / time to the first generated token (mlx-lm
                  evaluates only the KV cache of the prompt chunks and the
                  logits of the last prompt token);
  decode tok/s  = (generated tokens - 1) / time from the first to the last.

The read-bandwidth probe (bench/_bandwidth.py) runs in the same process at each
thread count, before the model runs; the decode roofline is
  weight bytes read per token (every parameter once: the ternary layers, the
  norms and the tied head, whose embedding-lookup row is negligible)
  / measured read bandwidth,
not counting the KV cache (reported beside it). Results go to OUT.json and
OUT.md. Other processes on the machine slow everything down: the JSON records
the load average before and after each run.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import socket
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def weight_bytes(model) -> int:
    from mlx.utils import tree_flatten

    return sum(v.nbytes for _, v in tree_flatten(model.parameters()))


def head_weight_bytes_saved(model) -> int:
    """Bytes per token that head_bits=8 does not read: with a tied int8 head the float
    embedding table is only looked up (one row per token) and its int8 copy is the
    head; an untied int8 lm_head holds no float weight."""
    emb = model.model.embed_tokens
    return emb.weight.nbytes if hasattr(emb, "head_weight") else 0


def kv_bytes_per_token(config: dict, context: int) -> int:
    """K and V of every layer read once per decoded token at `context` positions (bf16 cache)."""
    hd = config["hidden_size"] // config["num_attention_heads"]
    return 2 * config["num_hidden_layers"] * config["num_key_value_heads"] * hd * context * 2


def run_generation(model, prompt, n_decode: int) -> dict:
    import mlx.core as mx
    from mlx_lm.generate import generate_step

    t0 = time.perf_counter()
    stamps = []
    for _, (tok, _) in zip(range(n_decode), generate_step(mx.array(prompt), model, max_tokens=n_decode)):
        stamps.append(time.perf_counter())
    ttft = stamps[0] - t0
    decode_s = stamps[-1] - stamps[0]
    return {
        "prompt_tokens": len(prompt),
        "generated_tokens": len(stamps),
        "prefill_s": ttft,
        "prefill_tok_s": len(prompt) / ttft,
        "decode_s": decode_s,
        "decode_tok_s": (len(stamps) - 1) / decode_s if len(stamps) > 1 else None,
    }


def markdown(res: dict) -> str:
    lines = [
        f"# Whole-model CPU benchmark ({res['model']})",
        "",
        f"{res['date']} on {res['machine']['cpu']} ({res['machine']['usable_cpus']} usable CPUs), "
        f"MLX {res['machine']['mlx']}, mlx-lm {res['machine']['mlx_lm']}, bitnet_ext ISA {res['isa']}.",
        f"Prompt {res['prompt_tokens']} tokens, {res['decode_tokens']} decoded tokens (greedy, mlx-lm generate_step).",
        f"Weight bytes per token (float head): {res['weight_bytes'] / 1e9:.3f} GB "
        f"(+ KV cache at {res['prompt_tokens'] + res['decode_tokens']} positions: "
        f"{res['kv_bytes_at_end'] / 1e9:.3f} GB).",
        "",
        "| threads | activations | head | prefill tok/s | decode tok/s | read GB/s (4k pages) | roofline tok/s "
        "| decode / roofline | load avg before / after |",
        "|---:|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["runs"]:
        lines.append(
            f"| {r['threads']} | {r['activations']} | {r.get('head', 'float')} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.2f} "
            f"| {r['read_GBps']:.1f} ({r['read_GBps_4k']:.1f}) | {r['roofline_tok_s']:.2f} "
            f"| {100 * r['decode_vs_roofline']:.0f}% | {r['loadavg_before']:.2f} / {r['loadavg_after']:.2f} |"
        )
    lines += [
        "",
        "roofline tok/s = measured read bandwidth (best of huge and 4 KiB pages, same thread count, same run) "
        "/ weight bytes per token (of that run's head).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", default=None, help="an existing checkpoint (default: build one in a temp dir)")
    ap.add_argument("--threads", default="1,2", help="comma list of bitnet_ext thread counts")
    ap.add_argument("--acts", default="float,int8", help="comma list from float,int8")
    ap.add_argument(
        "--heads",
        default="float",
        help="comma list from float,int8 (head_bits=8); int8 last: an int8 head stays int8 when patched again",
    )
    ap.add_argument("--prompt", type=int, default=512, help="prompt tokens")
    ap.add_argument("--decode", type=int, default=128, help="generated tokens")
    ap.add_argument("--out", default=None, help="output path without extension (default bench/results/model-<host>)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fuse", action="store_true", help="q/k/v and gate/up fused (bitnet_ext.fused)")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np

    import bitnet_ext as bx
    from _bandwidth import measure_read_bandwidth
    from _machine import describe
    from bitnet_2b4t_shaped import write_bitnet_2b4t_shaped
    from bitnet_ext import mlx_lm as bx_mlx_lm

    info = describe()
    mx.set_default_device(mx.cpu)
    tmp = None
    model_dir = args.model_dir
    if model_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bitnet-2b4t-")
        t = time.perf_counter()
        write_bitnet_2b4t_shaped(tmp.name)
        model_dir = tmp.name
        _log(f"wrote the 2B-4T-shaped checkpoint to {model_dir} in {time.perf_counter() - t:.0f} s")
    model, _, config = bx_mlx_lm.load(model_dir, return_config=True, fuse=args.fuse)
    wbytes = weight_bytes(model)
    prompt = np.random.default_rng(args.seed).integers(3, config["vocab_size"], args.prompt).tolist()
    import mlx_lm

    res = {
        "model": "random BitNet b1.58 2B-4T shapes" if args.model_dir is None else os.path.abspath(model_dir),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": socket.gethostname(),
        "machine": {
            "cpu": info.get("cpu_model"),
            "usable_cpus": info.get("usable_cpus"),
            "mlx": mx.__version__,
            "mlx_lm": mlx_lm.__version__,
        },
        "isa": bx.cpu.active_isa(),
        "fused": args.fuse,
        "prompt_tokens": args.prompt,
        "decode_tokens": args.decode,
        "weight_bytes": wbytes,
        "kv_bytes_at_end": kv_bytes_per_token(config, args.prompt + args.decode),
        "runs": [],
    }
    heads = args.heads.split(",")
    if heads not in (["float"], ["int8"], ["float", "int8"]):
        ap.error("--heads: float, int8 or float,int8 (an int8 head cannot go back to float)")
    for head, threads in [(h, int(t)) for h in heads for t in args.threads.split(",")]:
        bx.cpu.set_num_threads(threads)
        bw = measure_read_bandwidth(threads, info["llc_bytes"])
        _log(f"{threads} thread(s): read {bw['read_GBps']:.1f} GB/s ({bw['read_GBps_4k']:.1f} on 4 KiB pages)")
        for acts in args.acts.split(","):
            bx_mlx_lm.patch_model(
                model, activation_bits=8 if acts == "int8" else None, head_bits=8 if head == "int8" else None,
                fuse=args.fuse,
            )
            run_bytes = weight_bytes(model) - head_weight_bytes_saved(model)
            run_generation(model, prompt[:16], 4)  # warm up (allocations, first-call costs)
            load_before = os.getloadavg()[0]
            r = run_generation(model, prompt, args.decode)
            r.update(
                threads=threads,
                activations=acts,
                head=head,
                weight_bytes=run_bytes,
                read_GBps=bw["read_GBps"],
                read_GBps_4k=bw["read_GBps_4k"],
                roofline_tok_s=bw["read_GBps"] * 1e9 / run_bytes,
                loadavg_before=load_before,
                loadavg_after=os.getloadavg()[0],
            )
            r["decode_vs_roofline"] = r["decode_tok_s"] / r["roofline_tok_s"]
            res["runs"].append(r)
            _log(
                f"  {acts} acts, {head} head: prefill {r['prefill_tok_s']:.1f} tok/s, "
                f"decode {r['decode_tok_s']:.2f} tok/s "
                f"({100 * r['decode_vs_roofline']:.0f}% of the {r['roofline_tok_s']:.2f} tok/s roofline), "
                f"load {load_before:.2f} -> {r['loadavg_after']:.2f}"
            )
    out = args.out or os.path.join(HERE, "results", f"model-{socket.gethostname()}")
    with open(out + ".json", "w") as f:
        json.dump(res, f, indent=1)
    md = markdown(res)
    with open(out + ".md", "w") as f:
        f.write(md)
    print(md)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
