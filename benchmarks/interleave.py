"""Timing variants in alternation (A B C A B C ...), so drift and machine load hit every variant alike."""
from __future__ import annotations

import statistics
import time

import jax


def interleaved_medians(fns: dict, reps: int, warmup: int = 1) -> dict:
    """Median wall seconds of each zero-argument `fns[name]()` (blocked until ready) over `reps` interleaved
    rounds, after `warmup` untimed rounds (the compiles)."""
    times = {name: [] for name in fns}
    for i in range(warmup + reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            if i >= warmup:
                times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) for name, v in times.items()}
