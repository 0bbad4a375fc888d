"""`quanta bench sparse-parity`: batched multi-width training vs a sequential loop over widths."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from .results import BenchResult

__all__ = ["run", "SparseParityBench"]


@dataclass(frozen=True)
class SparseParityBench(BenchResult):
    """Batched vs sequential training: widths, steps, batch_size; batched_s and sequential_s (wall seconds);
    speedup (sequential / batched) against target_speedup; max_per_task_loss_diff_bits (batched vs alone)."""

    widths: list
    steps: int
    batch_size: int
    batched_s: float
    sequential_s: float
    speedup: float
    target_speedup: float
    max_per_task_loss_diff_bits: float
    note: str


def run(args: argparse.Namespace) -> SparseParityBench:
    """Same configs, same steps: one stacked model for all widths vs one training per width (CPU, 1 thread).

    Widths 8 … 256 (8 … 64 with `args.quick`) on 50 subtasks, 10 bits, k 3, Zipf 1.5, batch 1000,
    400 steps (100); each member's per-subtask losses must match its lone training.

    Returns
    -------
    SparseParityBench
        "widths", "steps", "batch_size", "batched_s", "sequential_s", "speedup" (sequential / batched),
        "target_speedup" (3.0), "max_per_task_loss_diff_bits" (batched vs alone, should be ~0) and "note".
    """
    from ..sparse_parity import SparseParityConfig, train_sparse_parity, train_sparse_parity_batched

    widths = [8, 16, 32, 64] if args.quick else [8, 16, 32, 64, 128, 256]
    base = SparseParityConfig(n_tasks=50, n_bits=10, k=3, zipf_exponent=1.5, steps=100 if args.quick else 400,
                              batch_size=1000, lr=1e-2, seed=args.seed, log_every=100, eval_samples=100)
    configs = [base.replace(width=w) for w in widths]
    train_sparse_parity(base.replace(width=8, steps=20))  # warm-up: first-call costs hit neither timing
    t0 = time.perf_counter()
    _, batched = train_sparse_parity_batched(configs)
    t_batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = [train_sparse_parity(c)[1] for c in configs]
    t_seq = time.perf_counter() - t0
    diff = max(abs(a - b) for r, s in zip(batched, alone, strict=True)
               for a, b in zip(r["per_task_loss"], s["per_task_loss"], strict=True))
    return SparseParityBench(widths=widths, steps=base.steps, batch_size=base.batch_size,
                             batched_s=round(t_batched, 3), sequential_s=round(t_seq, 3),
                             speedup=round(t_seq / t_batched, 2), target_speedup=3.0,
                             max_per_task_loss_diff_bits=diff,
                             note="CPU, one thread each; wall times on a shared machine are noisy, the ratio less so")
