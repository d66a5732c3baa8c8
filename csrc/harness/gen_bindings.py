#!/usr/bin/env python3
"""Generate the harness glue for one kernels/*.metal file.

g++ ignores MSL attributes, so the harness must learn from the source which
[[buffer(i)]], [[threadgroup(i)]] or built-in index each kernel parameter is.
This script parses every ``[[kernel]] void name(...)`` in the file and writes

  <out_dir>/<stem>_params.h  one ``bnh::Param`` table per kernel (included
                             before the .metal source)
  <out_dir>/<stem>_post.h    registrations of non-template kernels (their
                             host name is the function name); template kernels
                             register through instantiate_kernel (harness.h)
  <out_dir>/<stem>.metal     the source with [[threadgroup(i)]] renamed to
                             [[bnh_threadgroup(i)]] (the address-space word
                             `threadgroup` is an empty macro in the harness, which
                             would break the attribute) and a #line directive, so
                             diagnostics and sanitizer reports name the original
                             .metal lines

Threadgroup arrays declared in a kernel body (``threadgroup float buf[64];``)
become ``static thread_local constinit`` arrays in the rewritten source: all
fibers of a threadgroup run on one OS thread, so they share the array, and
threadgroups on other OS threads have their own. (``threadgroup`` itself is an
empty macro, so pointers such as ``threadgroup float* p = buf + tid`` stay
ordinary per-thread pointers; defining it as ``static`` would make them shared
and silently wrong.) ``bnh::threadgroup_local`` refills such an array with
garbage at the start of each threadgroup, as uninitialized GPU memory.

With --target cuda (csrc/harness/cuda/, the same parser, a second back end) it
writes a rewritten copy of a .metal or kernels/*.h for nvcc and, for a .metal,
<stem>.cu: the parameter encodings (BNC_PARAMS_<kernel>) read by entry.cuh's
generated __global__ entries, and the registrations of non-template kernels.

Usage: gen_bindings.py [--target fibers|cuda] KERNEL.metal|HEADER.h OUT_DIR
"""

import pathlib
import re
import sys

BUILTINS = {
    "thread_position_in_grid": "ThreadPositionInGrid",
    "thread_position_in_threadgroup": "ThreadPositionInThreadgroup",
    "threadgroup_position_in_grid": "ThreadgroupPositionInGrid",
    "threads_per_threadgroup": "ThreadsPerThreadgroup",
    "threadgroups_per_grid": "ThreadgroupsPerGrid",
    "threads_per_grid": "ThreadsPerGrid",
    "thread_index_in_threadgroup": "ThreadIndexInThreadgroup",
    "thread_index_in_simdgroup": "ThreadIndexInSimdgroup",
    "simdgroup_index_in_threadgroup": "SimdgroupIndexInThreadgroup",
    "threads_per_simdgroup": "ThreadsPerSimdgroup",
    "simdgroups_per_threadgroup": "SimdgroupsPerThreadgroup",
}

KERNEL_RE = re.compile(r"\[\[\s*kernel\s*\]\]\s*void\s+(\w+)\s*\(")
TEMPLATE_RE = re.compile(r"template\s*<[^>]*>\s*$")
LOCAL_TG_ARRAY_RE = re.compile(r"^(\s*)threadgroup\s+([\w:<>, ]+?)\s+(\w+)\s*((?:\[[^\]]*\]\s*)+);", re.M)


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def split_params(text):
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch in "(<[{":
            depth += 1
        elif ch in ")>]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return [p.strip() for p in parts]


def parse_attr(param, where):
    """(kind, index) of a kernel parameter: ("buffer" | "threadgroup" | a BUILTINS key, index)."""
    attrs = re.findall(r"\[\[\s*([^\]]+?)\s*\]\]", param)
    if len(attrs) != 1:
        raise SystemExit(f"{where}: parameter '{param}' needs exactly one [[attribute]]")
    attr = attrs[0]
    m = re.fullmatch(r"(buffer|threadgroup)\s*\(\s*(\d+)\s*\)", attr)
    if m:
        return m.group(1), int(m.group(2))
    if attr in BUILTINS:
        return attr, 0
    raise SystemExit(f"{where}: unsupported attribute [[{attr}]] in '{param}'")


def parse_kernels(src_path, src):
    """Every [[kernel]] of a comment-stripped source: [(name, [(kind, index)], is_template)]."""
    found = []
    for m in KERNEL_RE.finditer(src):
        name = m.group(1)
        # the matching ')'
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(src[i], 0)
            i += 1
        where = f"{src_path}:{src[: m.start()].count(chr(10)) + 1}: kernel {name}"
        params = [parse_attr(p, where) for p in split_params(src[m.end() : i - 1])]
        is_template = TEMPLATE_RE.search(src[: m.start()].rstrip()) is not None
        found.append((name, params, is_template))
    return found


def fibers_param(kind, index):
    if kind in ("buffer", "threadgroup"):
        return f"{{bnh::ParamKind::{kind.capitalize()}, {index}}}"
    return f"{{bnh::ParamKind::{BUILTINS[kind]}, 0}}"


def write_fibers(src_path, raw, kernels, out_dir):
    params_lines = [f"// Generated by gen_bindings.py from {src_path.name}. Do not edit.", "#pragma once", ""]
    post_lines = [f"// Generated by gen_bindings.py from {src_path.name}. Do not edit.", ""]
    for name, params, is_template in kernels:
        table = ", ".join(fibers_param(k, i) for k, i in params)
        params_lines.append(f"static constexpr bnh::Param bnh_params_{name}[] = {{{table}}};")
        if not is_template:
            post_lines.append(
                f'static ::bnh::KernelRegistration bnh_reg_plain_{name}("{name}", "{src_path.resolve()}", '
                f"[](const ::bnh::Invocation& inv) {{ ::bnh::invoke(&{name}, bnh_params_{name}, inv); }});"
            )
    rewritten = LOCAL_TG_ARRAY_RE.sub(
        lambda m: f"{m.group(1)}static thread_local constinit {m.group(2)} {m.group(3)}{m.group(4)}; "
        f"::bnh::threadgroup_local({m.group(3)}, sizeof({m.group(3)}));",
        raw,
    )
    rewritten = re.sub(r"\[\[\s*threadgroup\s*\(", "[[bnh_threadgroup(", rewritten)
    (out_dir / f"{src_path.stem}.metal").write_text(f'#line 1 "{src_path.resolve()}"\n' + rewritten)
    (out_dir / f"{src_path.stem}_params.h").write_text("\n".join(params_lines) + "\n")
    (out_dir / f"{src_path.stem}_post.h").write_text("\n".join(post_lines) + "\n")


# ---------------------------------------------------------------------------
# CUDA back end (csrc/harness/cuda/): nvcc compiles a rewritten copy of each
# .metal and kernels/*.h. The rewrite is purely lexical and keeps every line
# where it was (the #line directive names the original file): parameter
# attributes are dropped (the generated __global__ entry binds parameters by
# the table below), [[kernel]] becomes __device__, address-space qualifiers
# are erased (as macros they would break CUDA's own __device__, which expands
# to __location__(device)), threadgroup arrays become __shared__.

ADDRESS_SPACE_RE = re.compile(r"\b(device|constant|thread|threadgroup)\s+(?=[A-Za-z_])")


def cuda_rewrite(src_path, raw):
    text = re.sub(r"\[\[\s*(buffer|threadgroup)\s*\(\s*\d+\s*\)\s*\]\]", "", raw)
    text = re.sub(r"\[\[\s*(" + "|".join(BUILTINS) + r")\s*\]\]", "", text)
    text = re.sub(r"\[\[\s*kernel\s*\]\]", "__device__", text)
    text = LOCAL_TG_ARRAY_RE.sub(lambda m: f"{m.group(1)}__shared__ {m.group(2)} {m.group(3)}{m.group(4)};", text)
    text = ADDRESS_SPACE_RE.sub("", text)
    leftover = re.search(r"\[\[\s*(?!host_name)(\w+)", strip_comments(text))
    if leftover:
        raise SystemExit(f"{src_path}: the CUDA target cannot map the attribute [[{leftover.group(1)}...]]")
    return f'#line 1 "{src_path.resolve()}"\n' + text


def write_cuda(src_path, raw, kernels, out_dir):
    out = out_dir / src_path.name
    out.write_text(cuda_rewrite(src_path, raw))
    if src_path.suffix != ".metal":
        return
    stem = src_path.stem
    lines = [f"// Generated by gen_bindings.py --target cuda from {src_path.name}. Do not edit.",
             f"// {stem}.metal compiled by nvcc through csrc/harness/cuda/msl_cuda.h.",
             '#include "entry.cuh"', f'#define BNC_SOURCE_FILE "{src_path.resolve()}"']
    for name, params, _ in kernels:
        kinds = {"buffer": "Buffer", "threadgroup": "Threadgroup", **BUILTINS}
        enc = ", ".join(f"int(bnh::ParamKind::{kinds[k]}) * 256 + {i}" for k, i in params)
        lines.append(f"#define BNC_PARAMS_{name} {enc}")
    lines += ["// Helper functions in the shaders are plain `inline`: make them device functions.",
              "#define inline __device__ inline", f'#include "{stem}.metal"', "#undef inline"]
    lines += [f"bnc_register_plain_kernel({name})" for name, _, is_template in kernels if not is_template]
    (out_dir / f"{stem}.cu").write_text("\n".join(lines) + "\n")


def main():
    args = sys.argv[1:]
    target = "fibers"
    if args[:1] == ["--target"]:
        target, args = args[1], args[2:]
    if target not in ("fibers", "cuda") or len(args) != 2:
        raise SystemExit("usage: gen_bindings.py [--target fibers|cuda] KERNEL.metal|HEADER.h OUT_DIR")
    src_path = pathlib.Path(args[0])
    out_dir = pathlib.Path(args[1])
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = src_path.read_text()
    kernels = parse_kernels(src_path, strip_comments(raw))
    if target == "fibers":
        write_fibers(src_path, raw, kernels, out_dir)
    else:
        write_cuda(src_path, raw, kernels, out_dir)


if __name__ == "__main__":
    main()
