"""`quanta bench executors`: one 2-way-parallel sweep under serial, local processes and Ray.

Prints each backend's speed-up over serial (target ≥ 1.6× on 2 cores) and Ray's per-task overhead.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from ..config import Config
from .results import BenchResult

__all__ = ["run", "busy_run", "noop_run", "BusyRun", "NoopRun", "BusyResult", "ExecutorsBench"]


@dataclass(frozen=True)
class BusyRun(Config):
    """One `busy_run`."""

    seed: int
    """Seeds the matrix."""
    seconds: float
    """Wall time to spend, in seconds."""


@dataclass(frozen=True)
class NoopRun(Config):
    """One `noop_run`: its index, handed back."""

    i: int
    """The run's index."""


@dataclass(frozen=True)
class BusyResult(BenchResult):
    """Matrix products `busy_run` did."""

    iterations: int


@dataclass(frozen=True)
class ExecutorsBench(BenchResult):
    """`run`: wall seconds per backend, their speed-ups over serial against target_speedup, Ray's overhead."""

    runs: int
    seconds_per_run: float
    cpu_count: int | None
    wall_s: dict
    speedup_vs_serial: dict
    ray_overhead_ms_per_task: float
    target_speedup: float


def busy_run(config: BusyRun, run_dir) -> BusyResult:
    """About `config.seconds` of single-threaded CPU work (matrix products), so backends compete for cores."""
    import numpy as np

    rng = np.random.default_rng(config.seed)
    a = rng.standard_normal((160, 160))
    end, n = time.perf_counter() + config.seconds, 0
    while time.perf_counter() < end:
        a = np.tanh(a @ a.T / 160.0)
        n += 1
    return BusyResult(iterations=n)


def noop_run(config: NoopRun, run_dir) -> NoopRun:
    """A run that does nothing (its config back): its wall time is the backend's per-task overhead."""
    return config


def run(args: argparse.Namespace) -> ExecutorsBench:
    """Wall time of the same `busy_run` sweep under the serial, processes and Ray backends of `map_runs`.

    8 runs of 1.5 s (4 of 0.5 s with `args.quick`), 2 workers, against serial; then 200 (50) `noop_run`
    tasks on Ray for its per-task overhead. Starts and shuts down a 2-CPU local Ray instance.

    Returns
    -------
    ExecutorsBench
        "runs", "seconds_per_run", "cpu_count", "wall_s" (backend → s), "speedup_vs_serial" (processes,
        ray: serial wall / theirs), "ray_overhead_ms_per_task" and "target_speedup" (1.6, on 2 cores).

    Raises
    ------
    ModuleNotFoundError
        Ray is not installed.
    """
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import ray

    from ..executors import map_runs

    n_runs, seconds = (4, 0.5) if args.quick else (8, 1.5)
    configs = [BusyRun(seed=args.seed + i, seconds=seconds) for i in range(n_runs)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}})
    # Start both Ray workers before timing (a worker's start-up is a one-off cost, not per-run overhead).
    map_runs(busy_run, [BusyRun(seed=10_000 + i, seconds=0.3) for i in range(2)], backend="ray", desc="ray warm-up")
    walls = {}
    for backend in ("serial", "processes", "ray"):
        t = time.perf_counter()
        map_runs(busy_run, configs, backend=backend, workers=2, desc=backend)
        walls[backend] = time.perf_counter() - t
    n_noop = 50 if args.quick else 200
    t = time.perf_counter()
    map_runs(noop_run, [NoopRun(i=i) for i in range(n_noop)], backend="ray", desc="ray overhead")
    overhead = (time.perf_counter() - t) / n_noop
    ray.shutdown()
    return ExecutorsBench(runs=n_runs, seconds_per_run=seconds, cpu_count=os.cpu_count(), wall_s=walls,
                          speedup_vs_serial={b: walls["serial"] / walls[b] for b in ("processes", "ray")},
                          ray_overhead_ms_per_task=1000 * overhead, target_speedup=1.6)
