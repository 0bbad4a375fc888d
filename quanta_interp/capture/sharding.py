"""`capture_gradients` split into shards run by `executors.map_runs` (local processes or a Ray cluster).

Each shard loads its own model through a picklable `load_model()` (e.g. `functools.partial(lm.load,
spec, device=...)`, which returns an `lm.LoadedModel`; a bare bridge works too), so this module never
decides how models are loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from ..config import Config
from ..io import Sweep, atomic_save_npy, atomic_write_json
from .doc import window_groups
from .store import GradientStore, capture_gradients
from .windows import length_batches

__all__ = ["capture_gradients_sharded", "Shard", "ShardResult"]


@dataclass(frozen=True)
class Shard(Config):
    """One shard of `capture_gradients_sharded`: its rows of the targets and the capture's settings (as there)."""

    rows: tuple[int, ...]
    """Indices into the targets, ascending: whole batches of the unsharded capture."""
    params: str
    """Which matrices (`select_modules`)."""
    projection_dim: int | None
    """k numbers per token; None or 0 stores exact gradients."""
    matrix_sketch_dim: int
    """m, the buckets of each matrix's own sketch."""
    batch_tokens: int
    """Bound on windows × longest window per batch."""
    seed: int
    """Seeds the sketch's hashes."""


@dataclass(frozen=True)
class ShardResult:
    """What a shard captured (its `result.json`): rows, and rows with a finite gradient."""

    n_rows: int
    n_ok: int

    def to_dict(self) -> dict:
        return {"n_rows": self.n_rows, "n_ok": self.n_ok}


def _capture_shard(shard: Shard, run_dir, *, load_model: Callable, docs: Sequence[np.ndarray],
                   targets: np.ndarray, shared_windows: bool = False) -> ShardResult:
    """`map_runs` worker: capture one contiguous slice of the targets."""
    rows = np.asarray(shard.rows, dtype=np.int64)
    model = load_model()
    store = capture_gradients(getattr(model, "bridge", model), docs, targets[rows], Path(run_dir.path) / "gradients",
                              params=shard.params, projection_dim=shard.projection_dim,
                              matrix_sketch_dim=shard.matrix_sketch_dim, batch_tokens=shard.batch_tokens,
                              seed=shard.seed, show_progress=False, shared_windows=shared_windows)
    return ShardResult(n_rows=len(rows), n_ok=int(store.ok.sum()))


def capture_gradients_sharded(load_model: Callable, docs: Sequence[np.ndarray], targets: np.ndarray,
                              out: str | Path, *, shards: int, params: str = "all", projection_dim: int | None = 16,
                              matrix_sketch_dim: int = 512, batch_tokens: int = 1024, seed: int = 0,
                              shared_windows: bool = False, **executor) -> GradientStore:
    """Capture `targets` ((doc, start, pos) rows) in `shards` tasks; the driver gathers the shards into the
    store `out`, rows in the order of `targets`. Shards hold whole batches of the unsharded capture (the
    same `length_batches`), so the result equals `capture_gradients` byte for byte.

    Shards run as a resumable sweep under `out/shards`: a rerun redoes only unfinished shards.

    Parameters
    ----------
    load_model : callable () → LoadedModel or TransformerBridge
        Picklable; called once in each shard's worker (a `LoadedModel`'s `.bridge` is used).
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document; sent to every worker.
    targets : int ndarray (n, 3)
        (doc, start, pos) rows: the window `docs[doc][start:pos]` predicts token `pos`.
    shards : int
        Tasks to split the batches into; fewer when there are fewer batches.
    params, projection_dim, matrix_sketch_dim, batch_tokens, seed, shared_windows
        As in `capture_gradients` (note the default `projection_dim` here is 16); with `shared_windows` the
        shards hold whole window groups (`doc.window_groups`).
    **executor
        Passed to `executors.map_runs`: backend, workers, address, resources, retries.

    Returns
    -------
    GradientStore
        The store at `out`; its `capture.json` also records "shards".

    Raises
    ------
    ValueError
        `shards` < 1; `map_runs` rejects the backend or its Ray cluster; a window is empty or runs outside
        its document.
    ParameterError
        As `capture_gradients`: `params` matches no matrix, or a bad `projection_dim`/`matrix_sketch_dim`.
    RuntimeError
        Ray only: some shards still failed after their retries.
    """
    from ..executors import map_runs

    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    if shards < 1:
        raise ValueError(f"shards must be ≥ 1, got {shards}")
    batches = (window_groups(targets, batch_tokens) if shared_windows
               else length_batches(targets[:, 2] - targets[:, 1], batch_tokens))
    bounds = [len(batches) * i // shards for i in range(shards + 1)]
    configs = [Shard(rows=tuple(np.sort(np.concatenate(batches[lo:hi])).tolist()), params=params,
                     projection_dim=projection_dim, matrix_sketch_dim=matrix_sketch_dim, batch_tokens=batch_tokens,
                     seed=seed)
               for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    out = Path(out)
    map_runs(partial(_capture_shard, load_model=load_model, docs=list(docs), targets=targets,
                     shared_windows=shared_windows), configs,
             root=out / "shards", name="gradient-shards", desc="gradient shards", **executor)
    sweep = Sweep(out / "shards", [c.to_dict() for c in configs], name="gradient-shards")
    parts = [GradientStore(sweep.run_dir(i).path / "gradients") for i in range(len(configs))]
    meta = {**parts[0].meta, "n": len(targets), "shards": len(parts)}
    out.mkdir(parents=True, exist_ok=True)
    where = np.concatenate([c.rows for c in configs])
    for name in ("gradients", "status", "losses", "targets"):
        stacked = np.concatenate([np.asarray(getattr(p, name)) for p in parts])
        gathered = np.empty_like(stacked)
        gathered[where] = stacked
        atomic_save_npy(out / f"{name}.npy", gathered)
    atomic_write_json(out / "capture.json", meta)
    return GradientStore(out)
