#!/usr/bin/env python
"""Where a decoded token's time goes on the CPU, measured in one process, interleaved.

    python bench/decode_breakdown.py --model-dir DIR [--threads 2] [--rounds 4]
                                     [--decode 48] [--prompt 512] [--out PATH]

DIR is a BitNet checkpoint such as bench/bitnet_2b4t_shaped.py writes. Each
round measures, back to back (a shared VM's read bandwidth drifts by 30-50%
within minutes, so only numbers of one round compare):

  probe     the read-bandwidth probe (bench/_bandwidth.py, quick variant);
  ternary   every ternary projection of the model once at M = 1 (int8
            activations, one mx.eval, weights from DRAM): the decode GEMVs
            without anything between them;
  head      the tied float head at M = 1 (dense_matmul);
  decode    mlx-lm's generate_step, ms per token after a PROMPT-token prompt;
  floor     the same graph with tiny widths (a "skinny" model: hidden 128,
            vocabulary 512, the same 30 layers and op count), decoded the
            same way: the per-token cost of building and dispatching the
            ~900 ops of a step, with almost no bytes to read.

decode - (ternary + head) is what the ops around the GEMVs cost in the real
step; floor bounds how much of that is per-op overhead. The roofline is the
weight bytes / the probe of the same round. JSON goes to OUT.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "examples"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="checkpoint (bench/bitnet_2b4t_shaped.py OUT_DIR)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--decode", type=int, default=48, help="tokens decoded per round")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--out", default=None, help="output path without extension (default: print only)")
    args = ap.parse_args()

    import mlx.core as mx
    import numpy as np

    import bitnet_ext as bx
    from _bandwidth import measure_read_bandwidth
    from _machine import describe
    from bench_model import run_generation, weight_bytes
    from bitnet_2b4t_shaped import CONFIG_2B4T
    from bitnet_ext import mlx_lm as bx_mlx_lm
    from tiny_bitnet import write_random_bitnet

    mx.set_default_device(mx.cpu)
    bx.cpu.set_num_threads(args.threads)
    info = describe()
    model, _, config = bx_mlx_lm.load(args.model_dir, return_config=True, activation_bits=8)
    skinny_dir = tempfile.TemporaryDirectory(prefix="bitnet-skinny-")
    skinny_cfg = {
        **CONFIG_2B4T,
        "num_hidden_layers": config["num_hidden_layers"],
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_attention_heads": 4,
        "num_key_value_heads": 1,
        "vocab_size": 512,
    }
    write_random_bitnet(Path(skinny_dir.name), skinny_cfg, 0)
    skinny = bx_mlx_lm.load(skinny_dir.name, activation_bits=8)[0]

    layers = model.model.layers
    projections = [
        p
        for layer in layers
        for p in (
            layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj, layer.self_attn.o_proj,
            layer.mlp.gate_proj, layer.mlp.up_proj, layer.mlp.down_proj,
        )
    ]
    ternary_bytes = sum(p.weight.nbytes for p in projections)
    head_bytes = model.model.embed_tokens.weight.nbytes
    model_bytes = weight_bytes(model)
    d, ff = config["hidden_size"], config["intermediate_size"]
    x = mx.random.normal((1, 1, d)).astype(mx.bfloat16)
    xf = mx.random.normal((1, 1, ff)).astype(mx.bfloat16)
    mx.eval(x, xf)

    def ternary():
        return [p(xf if p.input_dims == ff else x) for p in projections]

    def head():
        return [model.model.embed_tokens.as_linear(x)]

    def timed(build, reps=7):
        ts = []
        for _ in range(reps):
            outs = build()
            t0 = time.perf_counter()
            mx.eval(outs)
            ts.append(time.perf_counter() - t0)
        return statistics.median(ts)

    rng = np.random.default_rng(0)
    prompt = rng.integers(3, config["vocab_size"], args.prompt).tolist()
    skinny_prompt = rng.integers(3, skinny_cfg["vocab_size"], args.prompt).tolist()

    def decode_ms(m, p, n):
        return 1e3 / run_generation(m, p, n)["decode_tok_s"]

    decode_ms(model, prompt[:16], 4)
    decode_ms(skinny, skinny_prompt[:16], 4)
    rounds = []
    for r in range(args.rounds):
        probe = measure_read_bandwidth(args.threads, info["llc_bytes"], quick=True)["read_GBps"]
        t_tern = 1e3 * timed(ternary)
        t_head = 1e3 * timed(head)
        t_dec = decode_ms(model, prompt, args.decode)
        t_floor = decode_ms(skinny, skinny_prompt, args.decode)
        roofline_ms = model_bytes / probe / 1e6
        row = {
            "probe_GBps": probe,
            "ternary_ms": t_tern,
            "ternary_GBps": ternary_bytes / t_tern / 1e6,
            "head_ms": t_head,
            "head_GBps": head_bytes / t_head / 1e6,
            "decode_ms": t_dec,
            "floor_ms": t_floor,
            "roofline_ms": roofline_ms,
            "decode_vs_roofline": roofline_ms / t_dec,
        }
        rounds.append(row)
        print(
            f"round {r}: probe {probe:.1f} GB/s | ternary GEMVs {t_tern:.1f} ms ({row['ternary_GBps']:.1f} GB/s) "
            f"| head {t_head:.1f} ms ({row['head_GBps']:.1f} GB/s) | decode {t_dec:.1f} ms/token "
            f"| floor {t_floor:.1f} ms | roofline {roofline_ms:.1f} ms = {100 * row['decode_vs_roofline']:.0f}%",
            flush=True,
        )
    skinny_dir.cleanup()
    res = {
        "machine": {"cpu": info.get("cpu_model"), "usable_cpus": info.get("usable_cpus"), "mlx": mx.__version__},
        "isa": bx.cpu.active_isa(),
        "threads": args.threads,
        "prompt_tokens": args.prompt,
        "decode_tokens": args.decode,
        "weight_bytes": model_bytes,
        "ternary_bytes": ternary_bytes,
        "head_bytes": head_bytes,
        "rounds": rounds,
    }
    if args.out:
        with open(args.out + ".json", "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
