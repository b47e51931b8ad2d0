"""One model shared by several Python threads, the GIL released during native work, and
memory given back when models are dropped or calls repeat.

Calls on one model run concurrently: the weights are read-only, each call has its own KV
cache and random generator, so seeded results do not depend on what else is running."""

from __future__ import annotations

import gc
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from janus_rs import JanusPro

from conftest import REFERENCE, TINY

IMAGE = REFERENCE / "input.png"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no /proc/self/status on this platform")


def tasks(model: JanusPro):
    """A mix of understanding (greedy and seeded sampling) and seeded image generation."""
    return [
        lambda: model.understand(IMAGE, "What is this?", max_new_tokens=24),
        lambda: model.understand(None, "Write a poem.", max_new_tokens=24, do_sample=True, temperature=0.9, seed=3),
        lambda: model.understand([IMAGE, IMAGE], "Compare.", max_new_tokens=16, do_sample=True, top_k=20, seed=11),
        lambda: model.generate("a red cat", num_images=2, seed=7, progress=False).array,
        lambda: model.generate(["a house", "a tree"], seed=9, cfg_weight=3.0, progress=False).tokens,
        lambda: model.generate_tokens("a blue car", temperature=0.7, top_p=0.8, seed=1, progress=False),
    ]


def same(a, b) -> bool:
    return np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b


def test_eight_threads_give_the_serial_results(model):
    jobs = tasks(model) * 3
    serial = [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(lambda job: job(), jobs))
    assert all(same(a, b) for a, b in zip(serial, concurrent))


def test_calls_overlap_in_time(model):
    """Two threads' calls run at the same time (they are not serialised behind one lock)."""
    spans: list[tuple[float, float]] = []

    def call() -> None:
        start = time.perf_counter()
        model.understand(None, "Hello", max_new_tokens=200, on_token=lambda _t: time.sleep(0.001))
        spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (a0, a1), (b0, b1) = sorted(spans)
    assert b0 < a1, "the second call only started after the first ended"


def test_other_python_threads_run_during_a_call(model):
    ticks = [0]
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            ticks[0] += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        time.sleep(0.05)
        before = ticks[0]
        start = time.perf_counter()
        model.understand(None, "Hello", max_new_tokens=300)  # no Python callback: all native
        elapsed = time.perf_counter() - start
        during = ticks[0] - before
    finally:
        stop.set()
        spinner.join()
    # With the GIL held for the whole call the spinner would barely advance.
    assert elapsed > 0.02 and during > 1000, (elapsed, during)


def test_memory_is_released_when_models_are_dropped():
    def cycle() -> None:
        m = JanusPro.from_pretrained(TINY)
        m.understand(IMAGE, "Hi", max_new_tokens=4)
        m.generate("x", seed=1, progress=False)
        del m
        gc.collect()

    for _ in range(3):
        cycle()
    base = rss_bytes()
    loaded = JanusPro.from_pretrained(TINY)
    weights = loaded.num_parameters * 4  # float32 on CPU
    del loaded
    gc.collect()
    for _ in range(15):
        cycle()
    growth = rss_bytes() - base
    # Leaking the weights would add 15 × ~19 MB; allow allocator noise well below one model.
    assert growth < weights, f"RSS grew by {growth / 2**20:.1f} MiB over 15 load/drop cycles"


def test_repeated_calls_do_not_grow_memory(model):
    def call(i: int) -> None:
        model.understand(IMAGE, "What is this?", max_new_tokens=16, do_sample=True, seed=i)
        model.generate("a red cat", seed=i, progress=False)

    for i in range(20):  # warm-up: allocator pools, thread pools, caches
        call(i)
    base = rss_bytes()
    for i in range(100):
        call(i)
    growth = rss_bytes() - base
    assert growth < 0.01 * base, f"RSS grew by {growth / 2**20:.2f} MiB ({growth / base:.2%}) over 100 calls"
