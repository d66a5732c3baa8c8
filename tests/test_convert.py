"""bitnet_ext.convert: from_hf_bitnet (bit-exact) and `python -m bitnet_ext convert SRC DST`.

The HF layout is checked against an unpacker written here from the format's
definition (and against transformers' own unpack_weights/pack_weights when
torch and transformers are installed). The directory converter is checked
end to end: every BitNet linear bit-exact, every other tensor byte-identical,
SRC untouched, bad input refused with a clear message, and peak memory
measured while converting a checkpoint with a large tensor.
"""

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import bitnet_ext as bx
from bitnet_ext.convert import ConversionError, convert_checkpoint, from_hf_bitnet
from bitnet_ext.convert import main as convert_main

# ---------------------------------------------------------------------------
# The HF layout, written from its definition: uint8 (P, K) with P = ceil(N/4);
# bits 2i..2i+1 of packed[r, k] hold w[i*P + r, k] + 1.


def hf_unpack_reference(packed: np.ndarray, n_rows: int) -> np.ndarray:
    """Element by element (slow, obviously right); int8 (n_rows, K)."""
    P, K = packed.shape
    out = np.zeros((n_rows, K), np.int8)
    for n in range(n_rows):
        i, r = divmod(n, P)
        for k in range(K):
            out[n, k] = ((int(packed[r, k]) >> (2 * i)) & 3) - 1
    return out


def hf_pack_reference(codes: np.ndarray) -> np.ndarray:
    N, K = codes.shape
    P = (N + 3) // 4
    packed = np.zeros((P, K), np.uint8)
    for n in range(N):
        i, r = divmod(n, P)
        packed[r] |= ((codes[n] + 1).astype(np.uint8) << (2 * i)).astype(np.uint8)
    return packed


def rand_codes(shape, seed):
    return np.random.default_rng(seed).integers(-1, 2, shape).astype(np.int8)


def our_codes(wq) -> np.ndarray:
    return np.array(bx.unpack(wq))


# ---------------------------------------------------------------------------
# from_hf_bitnet


@pytest.mark.parametrize("N", [1, 3, 4, 5, 7, 8, 33, 64])
@pytest.mark.parametrize("K", [16, 48])
def test_from_hf_bitnet_bit_exact_vs_independent_unpacker(N, K):
    codes = rand_codes((N, K), N * 100 + K)
    packed = hf_pack_reference(codes)
    assert np.array_equal(hf_unpack_reference(packed, N), codes)  # the two test helpers agree
    wq, scale = from_hf_bitnet(mx.array(packed), mx.array([2.0]), out_features=N)
    assert wq.dtype == mx.uint32 and wq.shape == (N, K // 16)
    assert np.array_equal(our_codes(wq), hf_unpack_reference(packed, N))
    # our layout is bitnet_ext.pack's
    assert mx.array_equal(wq, bx.pack(mx.array(codes))).item()
    assert scale.dtype == mx.float32 and scale.shape == (1,)


def test_from_hf_bitnet_default_out_features_and_numpy_input():
    codes = rand_codes((12, 32), 1)
    wq, _ = from_hf_bitnet(hf_pack_reference(codes), 1.0)  # numpy in, out = 4 * P
    assert np.array_equal(our_codes(wq), codes)


def test_from_hf_bitnet_random_bytes_all_planes():
    """Arbitrary packed bytes (codes 0..2 in every plane), not only ones our packer made."""
    rng = np.random.default_rng(5)
    planes = rng.integers(0, 3, (4, 9, 32)).astype(np.uint8)
    packed = planes[0] | planes[1] << 2 | planes[2] << 4 | planes[3] << 6
    wq, _ = from_hf_bitnet(packed, 1.0)
    assert np.array_equal(our_codes(wq), hf_unpack_reference(packed, 36))


@pytest.mark.parametrize("ws_dtype", [mx.float32, mx.bfloat16, mx.float16])
def test_from_hf_bitnet_scale_conventions(ws_dtype):
    packed = hf_pack_reference(rand_codes((8, 16), 2))
    ws = mx.array([3.0], dtype=ws_dtype)
    ws32 = np.float32(np.array(ws.astype(mx.float32))[0])
    _, s_div = from_hf_bitnet(packed, ws, linear_class="bitlinear")
    _, s_mul = from_hf_bitnet(packed, ws, linear_class="autobitlinear")
    assert np.array(s_div)[0] == np.float32(1) / ws32  # divisor: float32 reciprocal, as mlx-lm computes it
    assert np.array(s_mul)[0] == ws32
    # dequantized: W / ws and W * ws
    codes = hf_unpack_reference(packed, 8).astype(np.float32)
    wq, s = from_hf_bitnet(packed, ws, linear_class="autobitlinear")
    assert np.array_equal(np.array(bx.dequantize(wq, s, dtype=mx.float32)), codes * ws32)


def test_from_hf_bitnet_bad_input():
    good = hf_pack_reference(rand_codes((8, 16), 3))
    bad = good.copy()
    bad[1, 3] |= 0b11 << 4  # a 2-bit field holding 3
    with pytest.raises(ConversionError, match="value 3, which is not a ternary weight"):
        from_hf_bitnet(bad, 1.0)
    with pytest.raises(ConversionError, match="uint8"):
        from_hf_bitnet(good.astype(np.int32), 1.0)
    with pytest.raises(ConversionError, match="multiple of 16"):
        from_hf_bitnet(np.zeros((2, 24), np.uint8), 1.0)
    with pytest.raises(ConversionError, match=r"does not match a \(13, 16\) layer"):
        from_hf_bitnet(good, 1.0, out_features=13)
    with pytest.raises(ConversionError, match="linear_class"):
        from_hf_bitnet(good, 1.0, linear_class="bitnet")
    with pytest.raises(ConversionError, match="non-zero"):
        from_hf_bitnet(good, 0.0)
    with pytest.raises(ConversionError, match="one value"):
        from_hf_bitnet(good, np.ones(8, np.float32))
    assert from_hf_bitnet(good, 1.0, out_features=np.int64(7))[0].shape == (7, 1)
    for bad_n in (7.9, "7", True):  # int(7.9) would silently convert a 7-row layer
        with pytest.raises(TypeError, match="from_hf_bitnet: out_features must be an integer"):
            from_hf_bitnet(good, 1.0, out_features=bad_n)


def test_convert_checkpoint_argument_types(tmp_path):
    with pytest.raises(TypeError, match="convert_checkpoint: src must be a path"):
        convert_checkpoint(42, tmp_path / "dst")
    with pytest.raises(TypeError, match="convert_checkpoint: dst must be a path"):
        convert_checkpoint(tmp_path, None)


def _transformers_bitnet():
    pytest.importorskip("torch", reason="torch is needed for transformers' BitNet pack/unpack (pip install torch)")
    mod = pytest.importorskip(
        "transformers.integrations.bitnet", reason="transformers is not installed (pip install transformers)"
    )
    return mod


@pytest.mark.parametrize("N", [4, 5, 7, 16, 30])
def test_from_hf_bitnet_vs_transformers(N):
    tb = _transformers_bitnet()  # skips (with the reason) before torch is imported
    import torch

    unpack = getattr(tb.unpack_weights, "_torchdynamo_orig_callable", tb.unpack_weights)  # skip torch.compile
    codes = rand_codes((N, 32), 7 + N)
    packed = tb.pack_weights(torch.from_numpy(codes.astype(np.int64)).clone())
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == ((N + 3) // 4, 32)
    assert np.array_equal(packed.numpy(), hf_pack_reference(codes))
    wq, _ = from_hf_bitnet(packed.numpy(), 1.0, out_features=N)
    theirs = unpack(packed, dtype=torch.int8).numpy()[:N]
    assert np.array_equal(our_codes(wq), theirs)
    assert np.array_equal(our_codes(wq), codes)


# ---------------------------------------------------------------------------
# model directories

CFG = dict(
    model_type="bitnet",
    architectures=["BitNetForCausalLM"],
    hidden_size=64,
    intermediate_size=96,
    num_attention_heads=4,
    num_key_value_heads=2,
    num_hidden_layers=2,
    rms_norm_eps=1e-5,
    vocab_size=50,
    tie_word_embeddings=True,
)
PROJ = {
    "self_attn.q_proj": lambda c: (c["num_attention_heads"] * 16, c["hidden_size"]),
    "self_attn.k_proj": lambda c: (c["num_key_value_heads"] * 16, c["hidden_size"]),
    "self_attn.v_proj": lambda c: (c["num_key_value_heads"] * 16, c["hidden_size"]),
    "self_attn.o_proj": lambda c: (c["hidden_size"], c["num_attention_heads"] * 16),
    "mlp.gate_proj": lambda c: (c["intermediate_size"], c["hidden_size"]),
    "mlp.up_proj": lambda c: (c["intermediate_size"], c["hidden_size"]),
    "mlp.down_proj": lambda c: (c["hidden_size"], c["intermediate_size"]),
}


def make_checkpoint(path: Path, *, linear_class="autobitlinear", shards=1, seed=0, embed_rows=None, config=None):
    """A BitNet model directory in the HF layout; returns {tensor name: array} and the ternary codes."""
    cfg = dict(CFG, **(config or {}))
    cfg["quantization_config"] = {"quant_method": "bitnet", "linear_class": linear_class}
    rng = np.random.default_rng(seed)
    d = cfg["hidden_size"]
    tensors = {
        "model.embed_tokens.weight": mx.random.normal(
            (embed_rows or cfg["vocab_size"], d), key=mx.random.key(seed)
        ).astype(mx.bfloat16),
        "model.norm.weight": mx.ones((d,), mx.bfloat16),
    }
    codes = {}
    for layer in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{layer}."
        tensors[pre + "input_layernorm.weight"] = mx.ones((d,), mx.bfloat16)
        tensors[pre + "post_attention_layernorm.weight"] = mx.ones((d,), mx.bfloat16)
        tensors[pre + "self_attn.attn_sub_norm.weight"] = mx.ones((d,), mx.bfloat16)
        tensors[pre + "mlp.ffn_sub_norm.weight"] = mx.ones((cfg["intermediate_size"],), mx.bfloat16)
        for proj, shape in PROJ.items():
            c = rng.integers(-1, 2, shape(cfg)).astype(np.int8)
            codes[pre + proj] = c
            tensors[pre + proj + ".weight"] = mx.array(hf_pack_reference(c))
            tensors[pre + proj + ".weight_scale"] = mx.array([rng.uniform(0.5, 4.0)], mx.bfloat16)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=1))
    (path / "tokenizer_config.json").write_text("{}")
    (path / "README.md").write_text("a tiny test model\n")
    names = sorted(tensors)
    if shards == 1:
        mx.save_safetensors(str(path / "model.safetensors"), tensors, metadata={"format": "pt"})
    else:
        weight_map = {}
        for s in range(shards):
            part = names[s::shards]
            fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
            mx.save_safetensors(str(path / fname), {k: tensors[k] for k in part}, metadata={"format": "pt"})
            weight_map.update({k: fname for k in part})
        (path / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map})
        )
    return tensors, codes


def snapshot(path: Path):
    """(relative path, size, mtime_ns, sha256) of every file under path."""
    out = []
    for p in sorted(path.rglob("*")):
        if p.is_file():
            st = p.stat()
            out.append(
                (str(p.relative_to(path)), st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            )
    return out


def load_dir(path: Path):
    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update(mx.load(str(f)))
    return out


@pytest.mark.parametrize("shards", [1, 3], ids=["single", "sharded"])
@pytest.mark.parametrize("linear_class", ["bitlinear", "autobitlinear"])
def test_convert_directory(tmp_path, shards, linear_class):
    src, dst = tmp_path / "src", tmp_path / "dst"
    tensors, codes = make_checkpoint(src, linear_class=linear_class, shards=shards)
    before = snapshot(src)
    assert convert_main([str(src), str(dst), "--quiet"]) == 0
    assert snapshot(src) == before, "SRC was modified"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".dst.")], "temporary directory left behind"

    cfg = json.loads((dst / "config.json").read_text())
    qc = cfg["quantization_config"]
    assert qc["quant_method"] == "bitnet_ext" and qc["linear_class"] == linear_class and qc["activation_bits"] is None
    assert qc["source_quantization_config"] == {"quant_method": "bitnet", "linear_class": linear_class}
    assert {k: v for k, v in cfg.items() if k != "quantization_config"} == CFG
    assert (dst / "README.md").read_text() == "a tiny test model\n" and (dst / "tokenizer_config.json").exists()

    out = load_dir(dst)
    for prefix, c in codes.items():
        w, s = out[prefix + ".weight"], out[prefix + ".scale"]
        assert prefix + ".weight_scale" not in out
        assert w.dtype == mx.uint32 and w.shape == (c.shape[0], c.shape[1] // 16)
        assert np.array_equal(our_codes(w), c), prefix
        ws = np.float32(np.array(tensors[prefix + ".weight_scale"].astype(mx.float32))[0])
        expected = np.float32(1) / ws if linear_class == "bitlinear" else ws
        assert s.dtype == mx.float32 and s.shape == (1,) and np.array(s)[0] == expected
        ref_wq, ref_s = from_hf_bitnet(
            tensors[prefix + ".weight"], tensors[prefix + ".weight_scale"], linear_class=linear_class
        )
        assert mx.array_equal(w, ref_wq).item() and mx.array_equal(s, ref_s).item()
    others = [k for k in tensors if not k.endswith(("_proj.weight", "weight_scale"))]
    for k in others:
        assert out[k].dtype == tensors[k].dtype and mx.array_equal(out[k], tensors[k]).item(), k
    assert len(out) == len(others) + 2 * len(codes)

    if shards > 1:
        index = json.loads((dst / "model.safetensors.index.json").read_text())
        assert set(index["weight_map"]) == set(out)
        files = {f.name for f in dst.glob("*.safetensors")}
        assert set(index["weight_map"].values()) == files
        for name, f in index["weight_map"].items():
            assert name in mx.load(str(dst / f))
        assert index["metadata"]["total_size"] == sum(a.nbytes for a in out.values())


def test_converted_files_are_valid_safetensors(tmp_path):
    safetensors = pytest.importorskip("safetensors", reason="the safetensors package is not installed")
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_checkpoint(src)
    convert_checkpoint(src, dst, progress=False)
    with safetensors.safe_open(str(dst / "model.safetensors"), framework="numpy") as f:  # strict header checks
        keys = list(f.keys())
        w = f.get_tensor("model.layers.0.mlp.up_proj.weight")
        assert f.metadata()["bitnet_ext"] == "ternary-uint32-k16"
    assert w.dtype == np.uint32 and "model.layers.1.self_attn.o_proj.scale" in keys


def test_convert_refuses_bad_input(tmp_path, capsys):
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_checkpoint(src)

    def refused(match, s=src, d=dst, *extra):
        before = snapshot(s) if s.exists() else None
        assert convert_main([str(s), str(d), "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert "bitnet_ext convert: error:" in err and match in err, err
        if before is not None:
            assert snapshot(s) == before
        return err

    refused("does not exist", tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    refused("not a directory", tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused("has no config.json", empty)

    def variant(name, edit_cfg=None, drop=()):
        d = tmp_path / name
        make_checkpoint(d)
        if edit_cfg:
            cfg = json.loads((d / "config.json").read_text())
            edit_cfg(cfg)
            (d / "config.json").write_text(json.dumps(cfg))
        for f in drop:
            (d / f).unlink()
        return d

    refused("no quantization_config", variant("noq", lambda c: c.pop("quantization_config")))
    refused("unknown layout", variant("gptq", lambda c: c.update(quantization_config={"quant_method": "gptq"})))
    refused("linear_class", variant("lc", lambda c: c["quantization_config"].update(linear_class="fancy")))
    refused("has no *.safetensors", variant("nost", drop=["model.safetensors"]))
    refused(
        "do not match the config",
        variant("shape", lambda c: c.update(intermediate_size=128)),
    )
    refused(
        "num_hidden_layers = 3 but 7 BitNet linear(s) are missing",
        variant("layers", lambda c: c.update(num_hidden_layers=3)),
    )
    # a sharded checkpoint whose index names a missing shard
    sh = tmp_path / "sh"
    make_checkpoint(sh, shards=2)
    (sh / "model-00002-of-00002.safetensors").unlink()
    refused("missing from", sh)
    # not a safetensors file
    junk = variant("junk")
    (junk / "model.safetensors").write_bytes(b"\xff" * 64)
    refused("not a safetensors file", junk)
    # float weights where packed ones are expected
    fl = tmp_path / "float"
    tensors, _ = make_checkpoint(fl)
    tensors["model.layers.0.mlp.up_proj.weight"] = mx.zeros((96, 64), mx.bfloat16)
    mx.save_safetensors(str(fl / "model.safetensors"), tensors)
    refused("expected packed U8", fl)

    # DST: exists without --force, inside SRC
    dst.mkdir()
    (dst / "keep").write_text("old")
    refused("already exists (pass --force", src, dst)
    assert (dst / "keep").read_text() == "old"
    refused("must not be SRC or inside it", src, src / "out")
    refused("must not be SRC or inside it", src, src)
    refused("contains SRC", src, tmp_path, "--force")
    assert convert_main([str(src), str(dst), "--quiet", "--force"]) == 0
    assert not (dst / "keep").exists() and (dst / "model.safetensors").exists()


def test_convert_failure_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    tensors, _ = make_checkpoint(src)
    packed = np.array(tensors["model.layers.1.mlp.down_proj.weight"])
    packed[3, 5] = 0xFF  # code 3 in every plane: found only while converting
    tensors["model.layers.1.mlp.down_proj.weight"] = mx.array(packed)
    mx.save_safetensors(str(src / "model.safetensors"), tensors)
    with pytest.raises(ConversionError, match=r"model.layers.1.mlp.down_proj.weight .*value 3"):
        convert_checkpoint(src, tmp_path / "dst", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_convert_progress_bar(tmp_path, capsys):
    src = tmp_path / "src"
    make_checkpoint(src)
    assert convert_main([str(src), str(tmp_path / "dst")]) == 0
    cap = capsys.readouterr()
    assert "100%" in cap.err, cap.err  # tqdm's bar, or the built-in fallback
    assert "converted 14 BitNet linear layers (autobitlinear)" in cap.out


# ---------------------------------------------------------------------------
# peak memory

PEAK_SCRIPT = textwrap.dedent(
    """
    import json, re, sys
    from bitnet_ext.convert import convert_checkpoint

    def status(key):
        return 1024 * int(re.search(key + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1))

    rss0 = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM (the peak RSS) to the current RSS
    convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
    print(json.dumps({"rss_before": rss0, "peak": status("VmHWM")}))
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak RSS is read from Linux's /proc/self/status")
def test_convert_peak_memory(tmp_path):
    """Converting a checkpoint whose largest tensor is 64 MiB must not hold it in memory."""
    src = tmp_path / "src"
    rows = 64 * 2**20 // (64 * 2)  # bf16 (rows, 64) embedding of 64 MiB
    make_checkpoint(src, embed_rows=rows, config={"vocab_size": rows})
    largest = rows * 64 * 2
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(src), str(tmp_path / "dst")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout.strip().splitlines()[-1])
    extra = m["peak"] - m["rss_before"]
    print(f"\nconvert peak memory: +{extra / 2**20:.1f} MiB over the {m['rss_before'] / 2**20:.0f} MiB baseline "
          f"for a checkpoint whose largest tensor is {largest / 2**20:.0f} MiB ({extra / largest:.2f}x)")  # fmt: skip
    assert extra < 0.5 * largest, f"peak +{extra / 2**20:.1f} MiB for a {largest / 2**20:.0f} MiB tensor"
    out = mx.load(str(tmp_path / "dst" / "model.safetensors"))
    assert out["model.embed_tokens.weight"].shape == (rows, 64)


def test_python_m_bitnet_ext_convert(tmp_path):
    """The CLI entry point: `python -m bitnet_ext convert SRC DST`."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    make_checkpoint(src)
    cmd = [sys.executable, "-m", "bitnet_ext", "convert", str(src), str(dst), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 and "unrecognized arguments" in proc.stderr:
        pytest.skip("python -m bitnet_ext has no `convert` subcommand yet (hook bitnet_ext.convert.add_subparser)")
    assert proc.returncode == 0, proc.stderr
    assert "converted 14 BitNet linear layers" in proc.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "already exists (pass --force" in again.stderr
