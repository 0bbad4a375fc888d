"""Timing shared by the benchmarks: medians of functions run in turn within each round."""

from __future__ import annotations

import time

import numpy as np

__all__ = ["median_times", "sync"]


def sync(device) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously), so a timer stops when it is done."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median_times(*fns, repeats: int = 3) -> float | list[float]:
    """Median seconds of each function over `repeats` rounds after one warm-up round; the functions run in
    turn within each round, so a change of load on a shared machine hits every one of them alike (timed one
    after the other, a ratio once read 0.16 on a loaded machine where the idle value was 1.12)."""
    for fn in fns:
        fn()  # warm-up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    medians = [float(np.median(t)) for t in times]
    return medians[0] if len(fns) == 1 else medians
