"""`quanta bench executors`: one 2-way-parallel sweep under serial, local processes and Ray.

Prints each backend's speed-up over serial (target ≥ 1.6× on 2 cores) and Ray's per-task overhead.
"""

from __future__ import annotations

import argparse
import time


def busy_run(config: dict, run_dir) -> dict:
    """About `seconds` of single-threaded CPU work (matrix products), so backends compete for cores.

    Parameters
    ----------
    config : dict
        "seed" and "seconds" (wall time to spend).

    Returns
    -------
    dict
        {"iterations": matrix products done}.
    """
    import numpy as np

    rng = np.random.default_rng(config["seed"])
    a = rng.standard_normal((160, 160))
    end, n = time.perf_counter() + config["seconds"], 0
    while time.perf_counter() < end:
        a = np.tanh(a @ a.T / 160.0)
        n += 1
    return {"iterations": n}


def noop_run(config: dict, run_dir) -> dict:
    """A run that does nothing ({"i": config["i"]} back): its wall time is the backend's per-task overhead."""
    return {"i": config["i"]}


def run(args: argparse.Namespace) -> dict:
    """Wall time of the same `busy_run` sweep under the serial, processes and Ray backends of `map_runs`.

    8 runs of 1.5 s (4 of 0.5 s with `args.quick`), 2 workers, against serial; then 200 (50) `noop_run`
    tasks on Ray for its per-task overhead. Starts and shuts down a 2-CPU local Ray instance.

    Returns
    -------
    dict
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
    configs = [{"seed": args.seed + i, "seconds": seconds} for i in range(n_runs)]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}})
    # Start both Ray workers before timing (a worker's start-up is a one-off cost, not per-run overhead).
    map_runs(busy_run, [{"seed": 10_000 + i, "seconds": 0.3} for i in range(2)], backend="ray", desc="ray warm-up")
    walls = {}
    for backend in ("serial", "processes", "ray"):
        t = time.perf_counter()
        map_runs(busy_run, configs, backend=backend, workers=2, desc=backend)
        walls[backend] = time.perf_counter() - t
    n_noop = 50 if args.quick else 200
    t = time.perf_counter()
    map_runs(noop_run, [{"i": i} for i in range(n_noop)], backend="ray", desc="ray overhead")
    overhead = (time.perf_counter() - t) / n_noop
    ray.shutdown()
    return {
        "runs": n_runs, "seconds_per_run": seconds, "cpu_count": os.cpu_count(),
        "wall_s": walls,
        "speedup_vs_serial": {b: walls["serial"] / walls[b] for b in ("processes", "ray")},
        "ray_overhead_ms_per_task": 1000 * overhead,
        "target_speedup": 1.6,
    }
