"""Counted cost of one reduction step of the prefill GEMM (kernels/ternary_gemm.h), per tile.

No GPU involved: the threadgroup-memory addresses every lane touches are
generated from the kernel's index formulas and run through a bank model, and
the instructions of one step are counted from the source. The old kernel
(main before the redesign: unpadded float tiles, 32 x 32, simdgroup_load,
64 of 128 threads decoding, scalar x staging, epilogue through threadgroup
memory) is counted the same way.

Bank model (an assumption: Apple does not document its threadgroup memory;
32 banks of 4 bytes is what NVIDIA has and what MLX's 16-byte padding is
designed against): an access instruction of the 32 lanes of a simdgroup
takes max(ceil(words / 32), largest number of distinct 4-byte words in one
bank) cycles, words being the distinct words it touches (lanes reading one
word share it). A lane's two adjacent fragment elements count as one access.

Instruction model, per thread and step of 32 along the reduction (issue
slots; address arithmetic left out on both sides): device loads, threadgroup
stores (one per 16 bytes), conversions, decode (per code: shift + and, - 1,
int -> float; float s(n) W adds a multiply), fragment loads (one access per
fragment, two for the weight fragment of the T / I8 modes whose pair is a
column), half -> float conversions of fragment elements, and the 8x8x8
multiply-accumulates (16 fma per lane each on hardware that does it in the
ALUs, the Apple-GPU case; the CUDA shim spends 32 shuffles more).

    python3 bench/gemm_tile_counts.py            # markdown on stdout
"""

import math

BK = 32
THREADS = 128
PAD = 16  # bytes per tile row


def cycles(accesses):
    """accesses: [(byte address, bytes)] of the 32 lanes of one instruction."""
    words = set()
    for a, n in accesses:
        words.update(range(a // 4, (a + n - 1) // 4 + 1))
    per_bank = {}
    for w in words:
        per_bank[w % 32] = per_bank.get(w % 32, 0) + 1
    return max(math.ceil(len(words) / 32), max(per_bank.values()))


def frag_rc(lane):
    return ((lane >> 4) & 1) * 4 + ((lane >> 1) & 3), ((lane >> 3) & 1) * 4 + (lane & 1) * 2


def new_design(mode, sx, bm, bn):
    """mode 't' | 'n' | 'i8'; sx: bytes of an activation element (int8: 1, staged as half)."""
    sa = 2 if mode == "i8" else sx  # A tile element
    sb = 4 if mode == "n" else 2  # B tile element
    lda = BK + PAD // sa
    ldb = (bn + PAD // sb) if mode == "n" else (BK + PAD // sb)
    tm, tn = bm // 16, bn // 16
    c = {}
    # x staging: runs of v elements.
    v0 = 16 // sx
    v = v0 if v0 * THREADS <= bm * BK else bm * BK // THREADS
    runs = bm * BK // v
    rpr = BK // v
    per_thread_runs = runs // THREADS
    x_cycles = 0
    for u in range(per_thread_runs):
        acc = []
        for lane in range(32):
            r = lane + 128 * u
            i, kk = r // rpr, (r % rpr) * v
            acc.append(((i * lda + kk) * sa, v * sa))
        x_cycles += cycles(acc)
    c["x device loads"] = per_thread_runs
    c["x tg stores"] = per_thread_runs * math.ceil(v * sa / 16)
    c["x cvt"] = per_thread_runs * v if mode == "i8" else 0
    # weight decode: p codes of one word per thread.
    p = bn * BK // THREADS
    acc = []
    for lane in range(32):
        if mode == "n":
            nn, j = lane // (bn // p), (lane % (bn // p)) * p
            acc.append(((nn * ldb + j) * sb, p * sb))
        else:
            j, kk = lane // (BK // p), (lane % (BK // p)) * p
            acc.append(((j * ldb + kk) * sb, p * sb))
    w_cycles = cycles(acc)
    c["w device loads"] = 1
    c["w tg stores"] = math.ceil(p * sb / 16)
    c["decode ALU"] = p * (4 if mode == "n" else 3)
    # fragment loads, per simdgroup and step: 4 x (tm A + tn B fragments).
    a_acc = [(((8 * 0 + frag_rc(l)[0]) * lda + frag_rc(l)[1]) * sa, 2 * sa) for l in range(32)]
    if mode == "n":
        b_instr = [[(((frag_rc(l)[0]) * ldb + frag_rc(l)[1]) * sb, 2 * sb) for l in range(32)]]
    else:
        b_instr = [[(((frag_rc(l)[1] + e) * ldb + frag_rc(l)[0]) * sb, sb) for l in range(32)] for e in (0, 1)]
    a_cyc, b_cyc = cycles(a_acc), sum(cycles(i) for i in b_instr)
    c["frag loads"] = 4 * (tm + tn * len(b_instr))
    c["frag cvt"] = 4 * 2 * (tm * (sa == 2) + tn * (sb == 2))
    mmas = 4 * tm * tn
    tg_cycles = 4 * (tm * a_cyc + tn * b_cyc) * 4 + (x_cycles + w_cycles) * 4  # all 4 simdgroups
    return dict(c=c, mmas=mmas, tg_cycles=tg_cycles, frag_cycles=(a_cyc, b_cyc), stage_cycles=(x_cycles, w_cycles),
                tg_bytes=bm * (BK * sa + PAD) + ((BK * (bn * sb + PAD)) if mode == "n" else bn * (BK * sb + PAD)),
                dev_bytes=bm * BK * sx + bn * BK // 4)


def old_design(mode, sx):
    """The kernel before the redesign: 32 x 32 x 32, float tiles [32][32] (no padding)."""
    bm = bn = 32
    c = {}
    # x: element e = tid + 128 u, one scalar load, convert, store each: 8 per thread.
    c["x device loads"] = 8
    c["x tg stores"] = 8
    c["x cvt"] = 8 if sx != 4 else 0
    x_cycles = 8 * cycles([(4 * l, 4) for l in range(32)])
    # weights: threads 0..63 decode one word into 16 floats (scalar stores); the simdgroups 0 and 1 carry it.
    if mode == "n":
        acc = [(4 * ((l // 2) * 32 + 16 * (l % 2)), 4) for l in range(32)]  # Bs[nn][16 h + jj], jj = 0
    else:
        acc = [(4 * ((16 * (l % 2)) * 32 + l // 2), 4) for l in range(32)]  # Bs[16 h + jj][j], jj = 0
    w_cycles = 16 * cycles(acc)
    c["w device loads"] = 1
    c["w tg stores"] = 16
    c["decode ALU"] = 16 * (4 if mode == "n" else 3)
    frag = [((frag_rc(l)[0] * 32 + frag_rc(l)[1]) * 4, 8) for l in range(32)]
    f_cyc = cycles(frag)
    c["frag loads"] = 4 * (2 + 2)
    c["frag cvt"] = 0
    mmas = 16
    # epilogue through threadgroup memory (once per tile, not per step): left out of the per-step counts.
    tg_cycles = 4 * 4 * 4 * f_cyc + 4 * x_cycles + 2 * w_cycles  # x by all 4 simdgroups, W by 2 (64 threads)
    return dict(c=c, mmas=mmas, tg_cycles=tg_cycles, frag_cycles=(f_cyc, f_cyc), stage_cycles=(x_cycles, w_cycles),
                tg_bytes=2 * 32 * 32 * 4, dev_bytes=bm * BK * sx + bn * BK // 4)


def row(name, d):
    c = d["c"]
    over = sum(c.values())
    # issue slots of one simdgroup: the old kernel's decode falls on 2 of its 4 simdgroups (critical path)
    per_mma_thread = over / d["mmas"]
    return (f"| {name} | {d['tg_bytes']} | {d['frag_cycles'][0]} / {d['frag_cycles'][1]} | "
            f"{d['stage_cycles'][0]} / {d['stage_cycles'][1]} | {d['mmas']} | {over} | {per_mma_thread:.1f} | "
            f"{d['tg_cycles'] / (4 * d['mmas']):.2f} | {d['dev_bytes']} | {d['dev_bytes'] / (4 * d['mmas']):.1f} |")


def main():
    head = ("| design (mode, x type, BM x BN) | threadgroup bytes | cycles per A / B fragment load | "
            "cycles per step, x / W staging (one simdgroup) | MMAs per simdgroup and step | "
            "other instructions per thread and step | ... per MMA | threadgroup cycles per MMA | "
            "bytes read from L2 / DRAM per step | ... per MMA |")
    lines = ["Per step of 32 along the reduction. Fragment cycles: one A access, and the B access(es) of one "
             "fragment (two scalar ones for the T / I8 weight column pair). Instructions 'per MMA' divide by the MMAs of one "
             "simdgroup (an 8x8x8 MMA is 16 fma per lane on Apple's ALUs); cycles and bytes 'per MMA' by the "
             "MMAs of the threadgroup. Bytes: the x tile (2 or 4 bytes, int8 1) and the packed weights (2 bits) "
             "one step brings into the threadgroup.", "",
             head, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, sx, label in (("t", 2, "T, half"), ("t", 4, "T, float"), ("n", 2, "N, half"), ("i8", 1, "I8, int8")):
        lines.append(row(f"old, {label}, 32 x 32", old_design(mode, sx)))
        for bm, bn in ((32, 32), (32, 64), (64, 32), (64, 64)):
            lines.append(row(f"new, {label}, {bm} x {bn}", new_design(mode, sx, bm, bn)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
