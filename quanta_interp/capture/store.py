"""Per-token gradients streamed to disk: memory-mapped rows, resumable after a kill, extendable.

Layout of a store folder: `gradients.npy` (n × dim float32), `status.npy` (int8: 0 pending, 1 ok,
−1 non-finite), `losses.npy` (float32 nats), `targets.npy` (n × 3 int64: doc, start, pos) and
`capture.json` (the settings that define the vectors, layer names and sizes).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import atomic_save_npy, atomic_write_json, progress, read_json
from .dims import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM
from .hooks import GradientCapture
from .modules import select_modules
from .windows import per_token_gradients, window_batch

__all__ = ["GradientStore", "capture_gradients", "length_batches"]

_FILES = ("gradients", "status", "losses", "targets")


class GradientStore:
    """A store folder opened for reading: arrays as attributes, `gradients` memory-mapped.

    Parameters
    ----------
    path : str or Path
        A folder written by `capture_gradients` or `capture_gradients_sharded`.

    Attributes
    ----------
    path : Path
    gradients : float32 memmap (n, dim), read-only
        One row per target (zeros where status ≠ 1): exact gradients or their `TensorSketch`.
    status : int8 (n,)
        0 pending, 1 captured, −1 non-finite (NaN/inf) gradient or loss.
    losses : float32 (n,)
        Each target's loss in nats, from the same forward pass as its gradient.
    targets : int64 (n, 3)
        (doc, start, pos): the window `doc[start:pos]` predicts token `pos`.
    meta : dict
        `capture.json`: params, projection_dim, matrix_sketch_dim, seed, dim, layers (name → exact size), n.
    ok : bool ndarray (n,)
        status == 1.

    Raises
    ------
    FileNotFoundError
        `path` has no `capture.json`.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "capture.json").exists():
            raise FileNotFoundError(f"{self.path} holds no captured gradients (no capture.json)")
        self.meta = read_json(self.path / "capture.json")
        self.gradients = np.load(self.path / "gradients.npy", mmap_mode="r")
        self.status = np.load(self.path / "status.npy")
        self.losses = np.load(self.path / "losses.npy")
        self.targets = np.load(self.path / "targets.npy")

    @property
    def ok(self) -> np.ndarray:
        """bool (n,): rows captured with a finite gradient and loss (status 1)."""
        return self.status == 1

    def valid(self) -> tuple[np.ndarray, np.ndarray]:
        """(row indices with finite gradients, their vectors loaded into memory).

        Returns
        -------
        rows : int64 ndarray (m,)
            Indices of the `ok` rows, ascending.
        vectors : float32 ndarray (m, dim)
        """
        idx = np.flatnonzero(self.ok)
        return idx, np.asarray(self.gradients[idx])


def length_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices into `lengths` grouped into batches of similar window length, each at most `batch_tokens`
    padded tokens (one window per batch if a window alone is longer): little padding, bounded memory.

    Parameters
    ----------
    lengths : int ndarray (n,)
        Tokens in each window (pos − start).
    batch_tokens : int
        Bound on a batch's windows × its longest window.

    Returns
    -------
    list of int64 ndarray
        Longest windows first, each batch in descending length (stable); together a permutation of
        range(n). Empty for n = 0.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, cur, width = [], [], 0
    for i in order:
        w = max(width, int(lengths[i]))
        if cur and w * (len(cur) + 1) > batch_tokens:
            batches.append(np.array(cur))
            cur, w = [], int(lengths[i])
        cur.append(i)
        width = w
    if cur:
        batches.append(np.array(cur))
    return batches


def _create(out: Path, meta: dict, targets: np.ndarray, old: GradientStore | None = None) -> None:
    """Allocate the arrays for `targets`; rows of `old` (a prefix of `targets`) are copied over."""
    n, dim = len(targets), meta["dim"]
    if dim * n * 4 > 64e9:
        raise ValueError(f"exact gradients need {dim * n * 4 / 1e9:.0f} GB; pass projection_dim > 0")
    tmp = out / ".gradients.npy.tmp"
    grads = np.lib.format.open_memmap(tmp, "w+", np.float32, (n, dim))
    status, losses = np.zeros(n, np.int8), np.zeros(n, np.float32)
    if old is not None and len(old.status) == len(old.targets) == len(old.gradients):
        k = len(old.targets)
        for lo in range(0, k, 4096):
            grads[lo: min(k, lo + 4096)] = old.gradients[lo: min(k, lo + 4096)]
        status[:k], losses[:k] = old.status, old.losses
    grads.flush()
    del grads
    atomic_save_npy(out / "status.npy", np.zeros(n, np.int8))  # nothing counts as done until the move below
    tmp.replace(out / "gradients.npy")
    atomic_save_npy(out / "losses.npy", losses)
    atomic_save_npy(out / "targets.npy", targets)
    atomic_write_json(out / "capture.json", {**meta, "n": n})
    atomic_save_npy(out / "status.npy", status)


def capture_gradients(model, docs: Sequence[np.ndarray], targets: np.ndarray, out: str | Path, *,
                      params: str = "all", projection_dim: int | None = DEFAULT_PROJECTION_DIM,
                      matrix_sketch_dim: int = DEFAULT_MATRIX_DIM, batch_tokens: int = 1024, seed: int = 0,
                      show_progress: bool = True) -> GradientStore:
    """Per-token gradients for `targets` ((doc, start, pos) rows) streamed to the store folder `out`.

    A rerun resumes: finished rows are kept. A rerun whose `targets` extend the stored ones (same rows
    first) captures only the new rows. Batches group windows of similar length, ≤ `batch_tokens` tokens.

    Each row is the gradient of the target's loss (nats) w.r.t. the weights and biases chosen by `params`,
    computed B windows per backward pass (`per_token_gradients`). Rows whose gradient or loss is not finite
    are stored as zeros with status −1 and are not retried.

    Parameters
    ----------
    model : TransformerBridge (or any causal LM returning logits (B, T, V))
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document.
    targets : int ndarray (n, 3)
        (doc, start, pos) rows: the window `docs[doc][start:pos]` predicts token `pos`.
    out : str or Path
        The store folder (see the module docstring for its layout).
    params : str
        Which matrices, as in `select_modules`.
    projection_dim : int or None
        k numbers per token (a `TensorSketch`); None or 0 stores exact gradients.
    matrix_sketch_dim : int
        m, the buckets of each matrix's own sketch (min(m, k) is used).
    batch_tokens : int
        Bound on windows × longest window per batch (see `length_batches`).
    seed : int
        Seeds the sketch's hashes: vectors are comparable only between stores with the same seed.

    Returns
    -------
    GradientStore
        The store at `out`, reopened.

    Raises
    ------
    ValueError
        `out` holds gradients captured with other settings or other targets; exact gradients would exceed
        64 GB; a window is empty (start ≥ pos) or runs outside its document.
    ParameterError
        `params` is not a preset or regex, or matches no matrix; `projection_dim` is negative or not an
        integer; `matrix_sketch_dim` is not a positive integer.
    RuntimeError
        A chosen matrix received no gradient (the model does not use it).
    """
    out = Path(out)
    targets = np.asarray(targets, dtype=np.int64).reshape(-1, 3)
    cap = GradientCapture.for_model(select_modules(model, params), projection_dim, matrix_dim=matrix_sketch_dim,
                                    seed=seed)
    meta = {"params": params, "projection_dim": projection_dim or 0,
            "matrix_sketch_dim": cap.sketch.m if cap.sketch else None, "seed": seed, "dim": cap.dim,
            "layers": cap.dims}
    old = GradientStore(out) if (out / "capture.json").exists() else None
    if old is not None:
        same = {k: old.meta.get(k) for k in meta} == meta  # extra bookkeeping keys (n, shards) do not count
        k = len(old.targets)
        if not same or k > len(targets) or not np.array_equal(old.targets, targets[:k]):
            raise ValueError(f"{out} holds gradients captured with other settings or tokens; use another folder")
        if k < len(targets):
            _create(out, meta, targets, old)
    else:
        out.mkdir(parents=True, exist_ok=True)
        _create(out, meta, targets)
    grads = np.load(out / "gradients.npy", mmap_mode="r+")
    status, losses = np.load(out / "status.npy"), np.load(out / "losses.npy")
    todo = np.flatnonzero(status == 0)
    bar = progress(total=len(targets), initial=len(targets) - len(todo), desc="per-token gradients", unit="tok",
                   disable=not show_progress)
    try:
        for batch in length_batches(targets[todo, 2] - targets[todo, 1], batch_tokens):
            rows = np.sort(todo[batch])
            vec, loss = per_token_gradients(model, cap, *window_batch(docs, targets[rows]))
            finite = torch.isfinite(vec).all(1) & torch.isfinite(loss)
            grads[rows] = torch.where(finite[:, None], vec, 0.0).numpy()
            grads.flush()
            losses[rows], status[rows] = loss.numpy(), np.where(finite.numpy(), 1, -1)
            atomic_save_npy(out / "losses.npy", losses)
            atomic_save_npy(out / "status.npy", status)  # written after the vectors: a kill never marks a row it lost
            bar.update(len(rows))
    finally:
        bar.close()
    return GradientStore(out)
