"""Timing helpers shared by the benchmark scripts (plain Python, no dependencies)."""

from __future__ import annotations

import statistics
import time
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
