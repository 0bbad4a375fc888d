"""Run one function over many configs: in-process, in local processes, or on a Ray cluster.

`map_runs(fn, configs, root=...)` keeps a `Sweep` under `root`: each run gets its own `RunDir`,
`fn(config, run_dir)` returns a JSON-able result (a mapping, or a result with `to_dict()`) written atomically as
`result.json`, and a restarted sweep skips every run that already has one. A config is a `Config` dataclass (the
worker gets it as it is; the sweep knows it by `to_dict()`) or a JSON-able mapping. Backends differ only in where `fn` runs;
with Ray, `root` must be on a filesystem every node sees.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from .config import BACKENDS
from .io import RunDir, Sweep, progress

__all__ = ["map_runs", "BACKENDS"]


RunFn = Callable[[Any, RunDir | None], Any]


def _run_one(fn: RunFn, config, path: str | None) -> Mapping[str, Any]:
    run_dir = RunDir(path) if path is not None else None
    result = fn(config, run_dir)
    result = result.to_dict() if hasattr(result, "to_dict") else result
    if run_dir is not None:
        run_dir.write_result(result)
    return result


def _share_cores(n_threads: int) -> None:
    """Process-worker initializer: each worker gets its share of the cores, not all of them (torch's default),
    which would oversubscribe the machine and make every worker several times slower."""
    import torch

    os.environ["OMP_NUM_THREADS"] = str(n_threads)
    torch.set_num_threads(n_threads)


def map_runs(
    fn: RunFn,
    configs: Iterable[Any],
    *,
    backend: str = "serial",
    root: str | os.PathLike | None = None,
    workers: int | None = None,
    name: str = "sweep",
    desc: str | None = None,
    address: str | None = None,
    resources: Mapping[str, float] | None = None,
    retries: int = 2,
) -> list[Mapping[str, Any]]:
    """Apply `fn(config, run_dir)` to every config and return the results in config order.

    With `root`, results persist in a resumable sweep folder (finished runs are not redone); without
    it, `run_dir` is None and nothing is written. "processes" and "ray" need a picklable, module-level
    `fn`. Ray: `address` is None (start a local instance), "auto" or "HOST:PORT"; `resources` per run,
    e.g. {"num_cpus": 1, "num_gpus": 1}; a failing run is retried `retries` times, then reported.

    Parameters
    ----------
    fn : callable (config, RunDir or None) -> mapping or result with `to_dict()`
        One run; its JSON-able result is written as the run's `result.json`.
    configs : iterable of Config or mapping
        One run each, passed to `fn` as given; with `root`, all distinct as JSON (`to_dict()` of a `Config`).
    backend : {"serial", "processes", "ray"}
        In this process, in a local process pool, or as Ray tasks. "processes" with at most one run
        to do runs it in this process.
    root : str or PathLike or None
        The sweep folder (see `io.Sweep`); None keeps results in memory only.
    workers : int or None
        "processes": pool size (default: one per core, at most one per run), each worker limited to
        its share of the cores' threads; "ray": CPUs of a Ray instance started here.
    name : str
        The sweep's name in `manifest.json`; a folder is only reopened under the same name.
    desc : str or None
        Progress-bar label; default `name`.
    address : str or None
        Ray only: None or "local" starts a local instance, "auto" joins a running cluster,
        "HOST:PORT" or "ray://HOST:PORT" a remote one.
    resources : mapping or None
        Ray only: per-run "num_cpus" (default 1) and "num_gpus" (default 0).
    retries : int
        Ray only: retries of a failing run.

    Returns
    -------
    list of mapping
        One result per config, in config order, as JSON (`to_dict()` of a typed result); runs finished by an
        earlier call come back as read from their `result.json`.

    Raises
    ------
    ValueError
        `backend` is not in `BACKENDS`; `root` holds a different sweep or `configs` has duplicates;
        Ray is not installed, `address` is unreachable, or no Ray node offers `resources`.
    RuntimeError
        Ray only: some runs still failed after `retries` retries (the others are saved).
    Exception
        "serial" and "processes": whatever `fn` raises, unchanged; runs already finished are saved.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    configs = [c if hasattr(c, "to_dict") else dict(c) for c in configs]
    ray = _ray_connect(address, resources, workers) if backend == "ray" else None
    sweep = (Sweep(root, [c.to_dict() if hasattr(c, "to_dict") else c for c in configs], name=name)
             if root is not None else None)
    results: list[Mapping[str, Any] | None] = sweep.results() if sweep else [None] * len(configs)
    todo = [i for i, r in enumerate(results) if r is None]
    paths = {i: (str(sweep.run_dir(i).path) if sweep else None) for i in todo}
    bar = progress(total=len(configs), initial=len(configs) - len(todo), desc=desc or name)
    try:
        if ray is not None:
            _ray_map(ray, fn, configs, paths, results, bar, resources or {}, retries)
        elif backend == "serial" or len(todo) <= 1:
            for i in todo:
                results[i] = _run_one(fn, configs[i], paths[i])
                bar.update()
        else:
            n = workers or min(len(todo), os.cpu_count() or 1)
            cores = max(1, (os.cpu_count() or 1) // n)
            with ProcessPoolExecutor(max_workers=n, initializer=_share_cores, initargs=(cores,)) as pool:
                futures = {pool.submit(_run_one, fn, configs[i], paths[i]): i for i in todo}
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        results[futures[fut]] = fut.result()
                        bar.update()
    finally:
        bar.close()
    return results  # type: ignore[return-value]


def _ray_connect(address: str | None, resources: Mapping[str, float] | None, workers: int | None):
    """Import Ray, join or start a cluster, and check that some node can offer `resources`."""
    try:
        import ray
    except ImportError as e:
        raise ValueError("backend 'ray' needs Ray: pip install 'quanta-interp[ray]'") from e
    if not ray.is_initialized():
        if address not in (None, "auto", "local"):
            host, _, port = address.removeprefix("ray://").rpartition(":")
            try:
                socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
            except (OSError, ValueError) as e:
                raise ValueError(f"Ray address {address!r} is unreachable ({e}); start one with "
                                 "`ray start --head` or use --address auto") from e
        try:
            kwargs = {"num_cpus": workers} if address in (None, "local") and workers else {}
            ray.init(address=None if address == "local" else address, include_dashboard=False,
                     log_to_driver=False, **kwargs)
        except ConnectionError as e:
            raise ValueError(f"no Ray cluster at address {address!r} ({e}); start one with `ray start --head`") from e
    need = {"CPU": float((resources or {}).get("num_cpus", 1)), "GPU": float((resources or {}).get("num_gpus", 0))}
    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    if not any(all(r.get(k, 0.0) >= v for k, v in need.items()) for r in nodes):
        offered = [{k: r.get(k, 0.0) for k in need} for r in nodes]
        raise ValueError(f"resources {need} per run: no Ray node offers that (nodes offer {offered})")
    return ray


def _ray_map(ray, fn, configs, paths, results, bar, resources, retries) -> None:
    task = ray.remote(_run_one).options(num_cpus=resources.get("num_cpus", 1), num_gpus=resources.get("num_gpus", 0),
                                        max_retries=retries, retry_exceptions=True)
    refs = {task.remote(fn, configs[i], paths[i]): i for i in paths}
    failed: list[str] = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        for ref in done:
            try:
                results[refs[ref]] = ray.get(ref)
            except Exception as e:  # noqa: BLE001 - Ray wraps any task error
                err = getattr(e, "cause", None) or e  # the task's own exception, without Ray's coloured header
                failed.append(f"run {refs[ref]} ({configs[refs[ref]]}): {type(err).__name__}: {str(err).splitlines()[0]}")
            bar.update()
    if failed:
        raise RuntimeError(f"{len(failed)} run(s) failed after {retries} retries; finished runs are saved and a "
                           f"rerun redoes only these: {'; '.join(failed[:3])}")
