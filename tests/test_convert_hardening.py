"""`python -m bitnet_ext convert` on hostile and malformed checkpoints.

SRC is untrusted input. Every case runs the real CLI in a subprocess (a crash,
hang or SIGBUS is a test failure, not a dead pytest) and requires exit status
2 with exactly one line on stderr that gives the reason, SRC unchanged, and
nothing written in DST's parent but DST itself.
"""

import json
import os
import signal
import stat
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import mlx.core as mx
import pytest
from test_convert import make_checkpoint, snapshot

ERROR_PREFIX = "bitnet_ext convert: error: "


def cli(src, dst, *extra, timeout=120, prelude=None):
    """`python -m bitnet_ext convert --quiet SRC DST *extra`, after running `prelude` in the same process."""
    args = ["convert", "--quiet", str(src), str(dst), *extra]
    if prelude is None:
        cmd = [sys.executable, "-m", "bitnet_ext", *args]
    else:
        argv = f"sys.argv = ['bitnet_ext', *{args!r}]"
        run = f"import runpy, sys\n{argv}\nrunpy.run_module('bitnet_ext', run_name='__main__')"
        cmd = [sys.executable, "-c", textwrap.dedent(prelude) + "\n" + run]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def refused(src, match, dst=None, **kw):
    """Run the CLI on src; it must refuse with one line naming `match` and touch nothing."""
    dst = dst or src.parent / "dst"
    before_src = snapshot(src) if src.is_dir() else None
    before_parent = sorted(os.listdir(dst.parent))
    proc = cli(src, dst, **kw)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, f"exit {proc.returncode}, stderr:\n{proc.stderr}"
    assert len(lines) == 1 and lines[0].startswith(ERROR_PREFIX), f"not one line of reason:\n{proc.stderr}"
    # (the temporary paths hold the test's name, which must not satisfy `match`)
    assert match in lines[0].replace(str(src.parent), "<tmp>").replace(str(dst.parent), "<tmp>"), lines[0]
    if before_src is not None:
        assert snapshot(src) == before_src, "SRC was modified"
    assert sorted(os.listdir(dst.parent)) == before_parent, "something was left in DST's parent"
    return lines[0]


def converted(src, dst=None, *extra):
    dst = dst or src.parent / "dst"
    proc = cli(src, dst, *extra)
    assert proc.returncode == 0, proc.stderr
    return dst


def tensor_names(src: Path):
    return sorted(mx.load(str(src / "model.safetensors")))


def write_index(src: Path, weight_map, **extra):
    (src / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map, **extra}))


def edit_config(src: Path, edit):
    cfg = json.loads((src / "config.json").read_text())
    cfg = edit(cfg) or cfg
    (src / "config.json").write_text(json.dumps(cfg))


def raw_safetensors(path: Path, header: bytes, data: bytes = b""):
    path.write_bytes(struct.pack("<Q", len(header)) + header + data)


def edit_safetensors_header(path: Path, edit):
    """Rewrite the JSON header of a safetensors file, keeping its tensors' bytes."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    edit(header)
    raw_safetensors(path, json.dumps(header).encode(), raw[8 + n :])


@pytest.fixture
def src(tmp_path):
    make_checkpoint(tmp_path / "src")
    return tmp_path / "src"


# ---------------------------------------------------------------------------
# file names from the checkpoint stay inside SRC


@pytest.mark.parametrize(
    "shard",
    ["../src/model.safetensors", "ABS", "sub/model.safetensors", "..", ".", "", "config.json"],
    ids=["dotdot", "absolute", "separator", "parent", "self", "empty", "not-safetensors"],
)
def test_index_shard_names_must_be_plain_files_in_src(src, shard):
    """The reproducer: a weight_map pointing at ../src/model.safetensors overwrote SRC, then SIGBUS."""
    if shard == "ABS":
        shard = str(src / "model.safetensors")
    (src / "sub").mkdir()
    (src / "sub" / "model.safetensors").write_bytes((src / "model.safetensors").read_bytes())
    write_index(src, {k: shard for k in tensor_names(src)})
    refused(src, "model.safetensors.index.json")


def test_symlinked_shard_outside_src_is_refused(tmp_path, src):
    outside = tmp_path / "outside"
    outside.mkdir()
    (src / "model.safetensors").rename(outside / "model.safetensors")
    (src / "model.safetensors").symlink_to(outside / "model.safetensors")
    refused(src, "outside the model directory")


@pytest.mark.parametrize("kind", ["file", "dir", "relative"])
def test_symlinked_extra_file_outside_src_is_refused(tmp_path, src, kind):
    """Every other file is copied: a symlink must not copy data from outside SRC into DST."""
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("private")
    target = {"file": secret / "key", "dir": secret, "relative": Path("../secret/key")}[kind]
    (src / "tokenizer.model").symlink_to(target)
    refused(src, "outside the model directory")


def test_symlinks_inside_src_are_followed(src):
    (src / "real").mkdir()
    (src / "real" / "vocab.txt").write_text("a b c")
    (src / "vocab.txt").symlink_to("real/vocab.txt")
    (src / "weights").mkdir()
    (src / "model.safetensors").rename(src / "weights" / "model.safetensors")
    (src / "model.safetensors").symlink_to("weights/model.safetensors")
    dst = converted(src)
    assert (dst / "vocab.txt").read_text() == "a b c" and not (dst / "vocab.txt").is_symlink()
    assert (dst / "real" / "vocab.txt").read_text() == "a b c"
    assert "model.layers.0.mlp.up_proj.scale" in mx.load(str(dst / "model.safetensors"))


def test_hugging_face_cache_snapshot_converts(tmp_path):
    """A hub cache snapshot is symlinks into ../../blobs: that is the one place outside SRC they may point."""
    repo = tmp_path / "models--org--tiny"
    plain = tmp_path / "plain"
    make_checkpoint(plain)
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    for i, f in enumerate(sorted(plain.iterdir())):
        blob = repo / "blobs" / f"blob{i}"
        f.rename(blob)
        (snap / f.name).symlink_to(Path("../../blobs") / blob.name)
    dst = converted(snap, tmp_path / "dst")
    assert (dst / "README.md").read_text() == "a tiny test model\n"
    # ... but a snapshot's symlink to anywhere else is still refused
    (snap / "extra.txt").symlink_to(tmp_path / "plain.txt")
    (tmp_path / "plain.txt").write_text("x")
    refused(snap, "outside the model directory", dst=tmp_path / "dst2")


@pytest.mark.parametrize("where", ["extra", "shard", "config"])
def test_symlink_loop_in_src_is_refused(src, where):
    name = {"extra": "loop.txt", "shard": "model.safetensors", "config": "config.json"}[where]
    if (src / name).exists():
        (src / name).unlink()
    (src / name).symlink_to(src / "loop2")
    (src / "loop2").symlink_to(src / name)
    refused(src, "symlink loop")


def test_directory_symlink_loop_is_refused(src):
    (src / "sub").mkdir()
    (src / "sub" / "up").symlink_to("..")
    refused(src, "symlink loop")


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "model.safetensors"])
def test_fifo_in_src_is_refused_without_hanging(src, name):
    (src / name).unlink(missing_ok=True)
    os.mkfifo(src / name)
    refused(src, "not a regular file", timeout=60)


# ---------------------------------------------------------------------------
# malformed files: a one-line reason, never a traceback


@pytest.mark.parametrize(
    "content, match",
    [
        (b"[]", "must hold a JSON object, got an array"),
        (b"null", "must hold a JSON object, got null"),
        (b'"bitnet"', "must hold a JSON object, got a string"),
        (b'{"model_type": "bit\xe9net"}', "not UTF-8"),
        (b"[" * 100000, "JSON"),
        (b"{", "not valid JSON"),
    ],
    ids=["list", "null", "string", "latin1", "deep", "truncated"],
)
def test_malformed_config_json(src, content, match):
    (src / "config.json").write_bytes(content)
    refused(src, match)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: c.pop("quantization_config") and c.update(text_config=None), "no quantization_config"),
        (lambda c: c.pop("quantization_config") and c.update(text_config=[1]), "text_config must be a JSON object"),
        (lambda c: c.update(num_hidden_layers="abc"), "num_hidden_layers must be a positive integer, got 'abc'"),
        (lambda c: c.update(num_hidden_layers=1.5), "num_hidden_layers must be a positive integer"),
        (lambda c: c.update(num_hidden_layers=True), "num_hidden_layers must be a positive integer"),
        (lambda c: c.update(num_attention_heads=0), "num_attention_heads must be a positive integer, got 0"),
        (lambda c: c.update(hidden_size=-64), "hidden_size must be a positive integer"),
        (lambda c: c.update(head_dim="16"), "head_dim must be a positive integer"),
        # a checkpoint-given layer count is not looped over blindly
        (lambda c: c.update(num_hidden_layers=10**15), "num_hidden_layers = 1000000000000000 but"),
        (
            lambda c: c["quantization_config"].update(modules_to_not_convert="lm_head"),
            "modules_to_not_convert must be a list of module names, got 'lm_head'",
        ),
        (
            lambda c: c["quantization_config"].update(modules_to_not_convert=[["lm_head"]]),
            "modules_to_not_convert must be a list of module names",
        ),
        (lambda c: c["quantization_config"].update(linear_class=["bitlinear"]), "unknown BitNet linear_class"),
    ],
    ids=[
        "text_config-null", "text_config-list", "layers-abc", "layers-float", "layers-bool", "heads-zero",
        "hidden-negative", "head_dim-str", "layers-huge", "not_convert-str", "not_convert-nested", "linear_class-list",
    ],
)  # fmt: skip
def test_malformed_config_values(src, edit, match):
    edit_config(src, edit)
    refused(src, match, timeout=60)


def test_quantization_config_under_text_config_converts(src):
    """quantization_config: null at the top, the real one under text_config (multimodal layout)."""

    def move(c):
        c["text_config"] = {"quantization_config": c["quantization_config"]}
        c["quantization_config"] = None

    edit_config(src, move)
    dst = converted(src)
    cfg = json.loads((dst / "config.json").read_text())
    assert cfg["quantization_config"] is None
    assert cfg["text_config"]["quantization_config"]["quant_method"] == "bitnet_ext"


@pytest.mark.parametrize(
    "header, match",
    [
        (b"[1, 2]", "must hold a JSON object, got an array"),
        (b'{"__metadata__": ["format", "pt"]}', "__metadata__ must be a JSON object"),
        (b'{"a": [1]}', "malformed safetensors entry for 'a'"),
        (b'{"a": {"dtype": "U8", "shape": [-1, -4], "data_offsets": [0, 4]}}', "malformed safetensors entry"),
        (b'{"a": {"dtype": "U8", "shape": [2.5], "data_offsets": [0, 2]}}', "malformed safetensors entry"),
        (b'{"a": {"dtype": 7, "shape": [4], "data_offsets": [0, 4]}}', "malformed safetensors entry"),
        (b'{"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 400]}}', "bad offsets"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
    ids=["list", "metadata-list", "entry-list", "negative-shape", "float-shape", "dtype-int", "past-end", "binary"],
)
def test_malformed_safetensors_header(src, header, match):
    raw_safetensors(src / "model.safetensors", header, b"\0" * 8)
    refused(src, match)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda h: h.update(__metadata__=["format", "pt"]), "__metadata__ must be a JSON object"),
        (lambda h: h["model.norm.weight"].update(shape=[-1, -64]), "malformed safetensors entry for 'model.norm"),
    ],
    ids=["metadata-list", "negative-shape"],
)
def test_malformed_header_of_a_real_checkpoint(src, edit, match):
    edit_safetensors_header(src / "model.safetensors", edit)
    refused(src, match)


def test_empty_packed_weight_is_refused(src):
    """A linear of zero rows or columns (not described by config.json) would divide by zero."""
    t = mx.load(str(src / "model.safetensors"))
    t["extra.proj.weight"] = mx.zeros((4, 0), mx.uint8)
    t["extra.proj.weight_scale"] = mx.ones((1,), mx.bfloat16)
    mx.save_safetensors(str(src / "model.safetensors"), t)
    refused(src, "a BitNet linear needs a row and a column")


@pytest.mark.parametrize(
    "value, match",
    [(5, "got int 5"), (["model.safetensors"], "got list"), (None, "got NoneType")],
    ids=["int", "list", "null"],
)
def test_non_string_weight_map_value(src, value, match):
    names = tensor_names(src)
    weight_map = {k: "model.safetensors" for k in names}
    weight_map[names[0]] = value
    write_index(src, weight_map)
    refused(src, match)


def test_reason_stays_on_one_line(src):
    """File names come from the checkpoint and may hold newlines: the reason is still one line."""
    write_index(src, {k: "evil\nmodel.safetensors" for k in tensor_names(src)})
    refused(src, "missing from <tmp>/src: evil\\nmodel.safetensors")


@pytest.mark.parametrize(
    "index, match",
    [({"weight_map": []}, "weight_map must be a JSON object"), ({"metadata": [1]}, "metadata must be a JSON object")],
    ids=["weight_map-list", "metadata-list"],
)
def test_malformed_index(src, index, match):
    index = {"weight_map": {k: "model.safetensors" for k in tensor_names(src)}, **index}
    (src / "model.safetensors.index.json").write_text(json.dumps(index))
    refused(src, match)


# ---------------------------------------------------------------------------
# DST: its parent, its mode, leftovers of killed runs


# Root writes anywhere: as root, the converter's process first gives up the
# capability that lets it ignore file modes (CAP_DAC_OVERRIDE), then runs the CLI.
DROP_DAC_OVERRIDE = """
import ctypes, os
if os.geteuid() == 0:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    assert libc.capget(ctypes.byref(header), data) == 0
    data[0].effective &= ~(1 << 1)  # CAP_DAC_OVERRIDE
    assert libc.capset(ctypes.byref(header), data) == 0, ctypes.get_errno()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="drops a Linux capability when run as root")
def test_dst_parent_not_writable(src):
    ro = src.parent / "ro"
    ro.mkdir()
    os.chmod(ro, 0o555)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", DROP_DAC_OVERRIDE + f"\nos.mkdir({str(ro / 'probe')!r})"], capture_output=True
        )
        assert probe.returncode != 0 and b"PermissionError" in probe.stderr, "the probe could write in a 0555 directory"
        refused(src, "DST's parent", dst=ro / "dst", prelude=DROP_DAC_OVERRIDE)
    finally:
        os.chmod(ro, 0o755)


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_dst_gets_the_umask_mode(src, umask):
    code = "import os, sys\nos.umask(int(sys.argv[1], 8))\nfrom bitnet_ext import convert\n"
    code += "sys.exit(convert.main(sys.argv[2:]))"
    dst = src.parent / "dst"
    proc = subprocess.run(
        [sys.executable, "-c", code, oct(umask), str(src), str(dst), "--quiet"], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(dst.stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((dst / "config.json").stat().st_mode) == 0o666 & ~umask


KILLED_MID_CONVERT = textwrap.dedent(
    """
    import os, signal, sys
    import bitnet_ext.convert as c

    def die(*args, **kwargs):  # SIGKILL while the first tensor is being written
        os.kill(os.getpid(), signal.SIGKILL)

    c._copy_tensor = c._convert_tensor = die
    c.convert_checkpoint(sys.argv[1], sys.argv[2], progress=False)
    """
)


def hidden(parent: Path):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_killed_run_leftovers_are_removed_by_the_next_run(src):
    parent, dst = src.parent, src.parent / "dst"
    proc = subprocess.run([sys.executable, "-c", KILLED_MID_CONVERT, str(src), str(dst)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert hidden(parent), "the killed run left no temporary directory (the test did not kill it mid-convert)"
    # Hidden directories that are not ours are kept: an unrelated one, and
    # one for another DST.
    (parent / ".dst.abcdefgh.tmp").mkdir()
    (parent / ".other.bitnet_ext-convert.0123abcd.tmp").mkdir()
    keep = [".dst.abcdefgh.tmp", ".other.bitnet_ext-convert.0123abcd.tmp"]
    converted(src, dst)
    assert hidden(parent) == keep
    assert (dst / "model.safetensors").exists()


LIVE_RUN = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bitnet_ext._staging import Staging

    s = Staging(Path(sys.argv[1]))
    print(s.path.name, flush=True)
    sys.stdin.read()  # hold the directory until the test closes stdin
    s.discard()
    """
)


def test_a_running_conversion_is_not_mistaken_for_a_leftover(src):
    dst = src.parent / "dst"
    live = subprocess.Popen(
        [sys.executable, "-c", LIVE_RUN, str(dst)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        name = live.stdout.readline().strip()
        assert name and (src.parent / name).is_dir()
        converted(src, dst)
        assert (src.parent / name).is_dir(), "a live run's directory was removed"
    finally:
        live.communicate("", timeout=60)
    assert not (src.parent / name).exists()


def test_force_replaces_dst_in_place(src):
    dst = src.parent / "dst"
    dst.mkdir()
    (dst / "old").write_text("old")
    converted(src, dst, "--force")
    assert not (dst / "old").exists() and (dst / "config.json").exists()
    assert hidden(src.parent) == []
