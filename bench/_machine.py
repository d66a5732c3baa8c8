"""Machine / software description for the benchmark JSON."""
from __future__ import annotations

import glob
import os
import platform
import re
import socket
import subprocess
import sys


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _parse_size(s: str) -> int | None:
    m = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)(i?B)?\s*", s, re.I)
    if not m:
        return None
    mult = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2).upper()]
    return int(float(m.group(1)) * mult)


def llc_bytes() -> tuple[int, str]:
    """Size of the last-level cache and where the number came from."""
    best = None
    for d in glob.glob("/sys/devices/system/cpu/cpu0/cache/index*"):
        level = _read(os.path.join(d, "level"))
        typ = _read(os.path.join(d, "type"))
        size = _read(os.path.join(d, "size"))
        if level is None or size is None or typ == "Instruction":
            continue
        b = _parse_size(size)
        if b and (best is None or int(level) > best[0]):
            best = (int(level), b)
    if best:
        return best[1], f"sysfs L{best[0]}"
    try:
        out = subprocess.run(["lscpu", "-B"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("L3 cache:"):
                return int(line.split(":")[1].split()[0]), "lscpu"
    except Exception:
        pass
    return 32 << 20, "default (not detected)"


def cpu_model() -> str:
    txt = _read("/proc/cpuinfo") or ""
    for line in txt.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    txt = _read("/proc/cpuinfo") or ""
    for line in txt.splitlines():
        if line.startswith("flags") or line.startswith("Features"):
            fl = line.split(":", 1)[1].split()
            keep = ("avx", "fma", "f16c", "vnni", "asimd", "sve", "bf16", "amx")
            return sorted(f for f in fl if any(k in f for k in keep))
    return []


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def mem_total_bytes() -> int | None:
    txt = _read("/proc/meminfo") or ""
    m = re.search(r"MemTotal:\s+(\d+) kB", txt)
    return int(m.group(1)) * 1024 if m else None


def mapped_libs(pattern: str) -> list[str]:
    """Shared libraries mapped into this process whose path matches pattern."""
    txt = _read("/proc/self/maps") or ""
    libs = set()
    for line in txt.splitlines():
        parts = line.split()
        if len(parts) >= 6 and re.search(pattern, os.path.basename(parts[5]), re.I):
            libs.add(parts[5])
    return sorted(libs)


def numpy_blas() -> dict:
    import numpy as np

    info: dict = {"numpy_version": np.__version__}
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        info["blas_name"] = blas.get("name")
        info["blas_version"] = blas.get("version")
        info["blas_config"] = blas.get("openblas configuration")
    except Exception as e:  # older numpy
        info["blas_error"] = repr(e)
    return info


def openblas_threads() -> int | None:
    """NumPy's OpenBLAS thread count, read from the library itself."""
    import ctypes

    import numpy as np

    libdirs = [os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs"),
               os.path.join(os.path.dirname(np.__file__), ".libs")]
    names = ["scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_",
             "scipy_openblas_get_num_threads", "openblas_get_num_threads"]
    for d in libdirs:
        for lib in glob.glob(os.path.join(d, "*openblas*.so*")):
            try:
                h = ctypes.CDLL(lib)
            except OSError:
                continue
            for n in names:
                fn = getattr(h, n, None)
                if fn is not None:
                    fn.restype = ctypes.c_int
                    return int(fn())
    return None


def describe() -> dict:
    import mlx.core as mx

    llc, llc_src = llc_bytes()
    info = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model(),
        "cpu_flags_simd": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "llc_bytes": llc,
        "llc_source": llc_src,
        "mem_total_bytes": mem_total_bytes(),
        "loadavg_at_start": list(os.getloadavg()),
        "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "python": sys.version.split()[0],
        "mlx_version": mx.__version__,
        "mlx_blas_libs": [p for p in mapped_libs(r"blas|lapack|accelerate") if "mlx" in p],
        "mlx_cpu_threads_note": (
            "MLX CPU ops run on the CPU stream's single thread; mx.matmul calls the "
            "BLAS bundled with mlx (see mlx_blas_libs), quantized_matmul is MLX's own "
            "loop. Neither follows our or OpenBLAS's thread settings (own_cores ~1.0)."),
    }
    info.update(numpy_blas())
    return info
