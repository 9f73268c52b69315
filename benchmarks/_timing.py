"""Timing helpers shared by the benchmark scripts (run them as ``python benchmarks/NAME.py``)."""

from __future__ import annotations

import statistics
import time

from invfem import reuse_freed_memory

# what `invfem` and `minimize` run with: freed matrices are reused, not faulted in again page by page
reuse_freed_memory()


def interleaved(fns: dict, repeat: int) -> dict:
    """Median wall time of each function (after one warm-up call each), the calls interleaved
    round by round so that machine noise hits all of them alike."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}
