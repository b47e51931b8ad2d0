"""Timing helpers shared by the benchmark scripts (plain Python, no dependencies)."""

from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path
from typing import Callable


def best_of(f: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs of `f`, in seconds."""
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - t)
    return best


def median_of(f: Callable[[], object], n: int) -> float:
    """The median of `n` runs of `f`, in seconds."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_description() -> str:
    """The CPU model and the SIMD flags that decide our kernels (every benchmark records both:
    the machine kind varies between sessions)."""
    model, flags = platform.processor() or "unknown CPU", []
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
                         if f in have]
                break
    except OSError:
        pass
    return f"{model}; {', '.join(flags) or 'no AVX2'}"
