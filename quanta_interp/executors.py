"""Run one function over many configs: in-process, in local processes, or (later) on Ray.

`map_runs(fn, configs, root=...)` keeps a `Sweep` under `root`: each run gets its own `RunDir`,
`fn(config, run_dir)` returns a JSON-able result written atomically as `result.json`, and a
restarted sweep skips every run that already has one. Backends differ only in where `fn` runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from .io import RunDir, Sweep, progress

__all__ = ["map_runs", "BACKENDS"]

BACKENDS = ("serial", "processes")

RunFn = Callable[[dict, RunDir | None], Mapping[str, Any]]


def _run_one(fn: RunFn, config: dict, path: str | None) -> Mapping[str, Any]:
    run_dir = RunDir(path) if path is not None else None
    result = fn(config, run_dir)
    if run_dir is not None:
        run_dir.write_result(result)
    return result


def map_runs(
    fn: RunFn,
    configs: Iterable[Mapping[str, Any]],
    *,
    backend: str = "serial",
    root: str | os.PathLike | None = None,
    workers: int | None = None,
    name: str = "sweep",
    desc: str | None = None,
) -> list[Mapping[str, Any]]:
    """Apply `fn(config, run_dir)` to every config and return the results in config order.

    With `root`, results persist in a resumable sweep folder (finished runs are not redone); without
    it, `run_dir` is None and nothing is written. `backend="processes"` needs a picklable,
    module-level `fn`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)} (ray: see issue 'Scale out'), got {backend!r}")
    configs = [dict(c) for c in configs]
    sweep = Sweep(root, configs, name=name) if root is not None else None
    results: list[Mapping[str, Any] | None] = sweep.results() if sweep else [None] * len(configs)
    todo = [i for i, r in enumerate(results) if r is None]
    paths = {i: (str(sweep.run_dir(i).path) if sweep else None) for i in todo}
    bar = progress(total=len(configs), initial=len(configs) - len(todo), desc=desc or name)
    try:
        if backend == "serial" or len(todo) <= 1:
            for i in todo:
                results[i] = _run_one(fn, configs[i], paths[i])
                bar.update()
        else:
            n = workers or min(len(todo), os.cpu_count() or 1)
            with ProcessPoolExecutor(max_workers=n) as pool:
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

