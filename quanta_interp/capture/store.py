"""Per-token gradients streamed to disk: memory-mapped rows, resumable after a kill, extendable, checksummed.

Layout of a store folder: `gradients.npy` (n × dim float32), `status.npy` (int8: 0 pending, 1 ok,
−1 non-finite), `losses.npy` (float32 nats), `targets.npy` (n × 3 int64: doc, start, pos),
`checksums.npy` (n × 4 uint32: the CRC-32 of each row of gradients, status, losses and targets, recorded
when the row is written) and `capture.json` (the settings that define the vectors, layer names and sizes, n).

Opening a store checks every file's dtype and shape and every captured row against its checksums, so a
damaged store is refused with one line naming the file and the fix, never used. Rows are committed by
`status.npy`, written last: a kill leaves unfinished rows pending, and only pending rows are (re)captured.
The gradient file is allocated with `posix_fallocate` after a free-space check, so a full disk is an
`OSError` saying how much space is needed, never a SIGBUS, and the store stays resumable.
"""

from __future__ import annotations

import errno
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..io import (
    DamagedFileError,
    RunLock,
    atomic_save_npy,
    atomic_write_json,
    check_free_space,
    load_npy,
    progress,
    read_json,
)
from .dims import DEFAULT_MATRIX_DIM, DEFAULT_PROJECTION_DIM
from .doc import shared_prefix_gradients, window_groups
from .hooks import GradientCapture
from .modules import select_modules
from .windows import length_batches, per_token_gradients, window_batch

__all__ = ["GradientStore", "DamagedRowsError", "open_store", "mark_pending", "recapture_damaged", "capture_gradients",
           "row_checksums"]

_FILES = ("gradients", "status", "losses", "targets")
_CHECKSUMS = "crc32 of each captured row of gradients, status, losses, targets (checksums.npy)"
_NEW_OUT = "rerun into a new --out folder (or restore the file)"
_VERIFY_ROWS = 2048  # rows read per chunk while verifying


class DamagedRowsError(DamagedFileError):
    """Captured rows that no longer match the checksums recorded when they were written.

    Attributes
    ----------
    rows : int64 ndarray
        The damaged rows; `mark_pending` (`--recapture`) makes them pending so that they are captured again.
    """

    def __init__(self, path: Path, rows: np.ndarray, n_captured: int, files: list[str]):
        self.rows = rows
        shown = ", ".join(str(int(r)) for r in rows[:5]) + (", …" if len(rows) > 5 else "")
        super().__init__(path, f"{len(rows)} of {n_captured} captured rows differ from the checksums recorded when "
                               f"they were written (rows {shown}; in {', '.join(files)})",
                         "rerun with --recapture to capture those rows again (capture_gradients(recapture=True)), "
                         "or use a new --out")


def row_checksums(grads: np.ndarray, status: np.ndarray, losses: np.ndarray, targets: np.ndarray,
                  rows: np.ndarray) -> np.ndarray:
    """uint32 (len(rows), 4): CRC-32 of each row's gradient bytes, status, loss and target (in that order).

    `grads` may be a memmap: it is read in chunks of rows.
    """
    rows = np.asarray(rows, dtype=np.int64)
    out = np.zeros((len(rows), 4), np.uint32)
    small = (np.ascontiguousarray(status), np.ascontiguousarray(losses), np.ascontiguousarray(targets))
    for lo in range(0, len(rows), _VERIFY_ROWS):
        chunk = rows[lo: lo + _VERIFY_ROWS]
        block = np.ascontiguousarray(grads[chunk])
        for j, r in enumerate(chunk):
            out[lo + j] = (zlib.crc32(block[j]), zlib.crc32(small[0][r: r + 1]), zlib.crc32(small[1][r: r + 1]),
                           zlib.crc32(small[2][r]))
    return out


class GradientStore:
    """A store folder opened for reading, checked: arrays as attributes, `gradients` memory-mapped.

    Parameters
    ----------
    path : str or Path
        A folder written by `capture_gradients` or `capture_gradients_sharded`.
    verify : bool
        Check every captured row against its checksums (≈ the time to read the gradient file once).

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
    checksums : uint32 (n, 4)
        Each captured row's `row_checksums` (zeros for pending rows).
    meta : dict
        `capture.json`: params, projection_dim, matrix_sketch_dim, seed, dim, layers (name → exact size), n.
    ok : bool ndarray (n,)
        status == 1.

    Raises
    ------
    FileNotFoundError
        `path` holds no store at all.
    DamagedFileError
        `capture.json` is missing while rows are captured, or a file is empty, truncated, not an array, or of
        another dtype or length than `capture.json` says (the message names it).
    DamagedRowsError
        `verify` and captured rows differ from their checksums.
    """

    def __init__(self, path: str | Path, *, verify: bool = True):
        self.path = p = Path(path)
        if not (p / "capture.json").exists():
            if not any((p / f"{name}.npy").exists() for name in _FILES):
                raise FileNotFoundError(f"{p} holds no captured gradients (no capture.json)")
            raise DamagedFileError(p / "capture.json", "missing, while the store's arrays are there", _NEW_OUT)
        self.meta = meta = read_json(p / "capture.json", expect=dict, fix=_NEW_OUT)
        if not all(isinstance(meta.get(k), int) and meta[k] >= 0 for k in ("n", "dim")) or not isinstance(
                meta.get("layers"), dict):
            raise DamagedFileError(p / "capture.json", "lacks the store's n, dim or layers", _NEW_OUT)
        n, dim = meta["n"], meta["dim"]
        self.gradients = _array(p / "gradients.npy", np.float32, (n, dim), mmap_mode="r")
        self.status = _array(p / "status.npy", np.int8, (n,))
        if not np.isin(self.status, (-1, 0, 1)).all():
            raise DamagedFileError(p / "status.npy", "holds values other than -1, 0 and 1", _NEW_OUT)
        self.losses = _array(p / "losses.npy", np.float32, (n,))
        self.targets = _array(p / "targets.npy", np.int64, (n, 3))
        if not (p / "checksums.npy").exists() and ("checksums" not in meta or "shards" in meta):
            self.checksums = self._seal()  # a store written before checksums, or gathered from shards
            return
        self.checksums = _array(p / "checksums.npy", np.uint32, (n, 4))
        if verify:
            bad, files = self.damaged_rows()
            if len(bad):
                raise DamagedRowsError(p / "gradients.npy" if files == ["gradients.npy"] else p, bad,
                                       int((self.status != 0).sum()), files)

    def _seal(self) -> np.ndarray:
        """Checksum the captured rows as they are now and record them (when the folder can be written)."""
        sums = np.zeros((len(self.status), 4), np.uint32)
        done = np.flatnonzero(self.status != 0)
        sums[done] = row_checksums(self.gradients, self.status, self.losses, self.targets, done)
        try:
            atomic_save_npy(self.path / "checksums.npy", sums)
            atomic_write_json(self.path / "capture.json", {**self.meta, "checksums": _CHECKSUMS})
        except OSError:  # a read-only copy of an older store: read as it is
            pass
        return sums

    def damaged_rows(self) -> tuple[np.ndarray, list[str]]:
        """(captured rows whose checksums differ, the files in which they differ), checked now."""
        done = np.flatnonzero(self.status != 0)
        differ = row_checksums(self.gradients, self.status, self.losses, self.targets, done) != self.checksums[done]
        bad = done[differ.any(1)]
        files = [f"{name}.npy" for name, col in zip(_FILES, differ.T, strict=True) if col.any()]
        return bad, files

    @property
    def ok(self) -> np.ndarray:
        """bool (n,): rows captured with a finite gradient and loss (status 1)."""
        return self.status == 1

    @property
    def pending(self) -> np.ndarray:
        """bool (n,): rows not captured yet (status 0), e.g. after a kill."""
        return self.status == 0

    def passing_rows(self, threshold: float) -> np.ndarray:
        """int64 (m,): rows, ascending, captured with a finite gradient (`ok`) and a loss below `threshold` nats."""
        return np.flatnonzero(self.ok & (self.losses < threshold))

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


def _array(path: Path, dtype, shape: tuple, mmap_mode: str | None = None) -> np.ndarray:
    if not path.exists():
        raise DamagedFileError(path, "missing, while capture.json is there", _NEW_OUT)
    return load_npy(path, dtype=dtype, shape=shape, mmap_mode=mmap_mode, fix=_NEW_OUT)


def open_store(path: str | Path, *, verify: bool = True) -> GradientStore | None:
    """The store in `path`, checked; None when there is none yet, or only an allocation that a kill
    interrupted before any row was captured (a capture then starts afresh).

    Raises
    ------
    DamagedFileError, DamagedRowsError
        As `GradientStore`, when rows are captured.
    """
    path = Path(path)
    try:
        return GradientStore(path, verify=verify)
    except FileNotFoundError:
        return None
    except DamagedRowsError:
        raise
    except DamagedFileError as err:
        try:
            status = np.load(path / "status.npy", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            raise err from None  # the store's own message names the file
        if status.dtype == np.int8 and status.ndim == 1 and not status.any():
            return None  # nothing was captured: nothing is lost by allocating again
        raise


def recapture_damaged(path: str | Path) -> int:
    """Make the captured rows of the store in `path` that differ from their checksums pending, so that the next
    capture takes them again (`--recapture`); returns how many (0 when `path` holds no store)."""
    path = Path(path)
    if not (path / "capture.json").exists():
        return 0
    bad, _ = GradientStore(path, verify=False).damaged_rows()
    mark_pending(path, bad)
    return len(bad)


def mark_pending(path: str | Path, rows: np.ndarray) -> None:
    """Make `rows` of the store pending (status 0), so that the next capture takes them again (`--recapture`)."""
    status = load_npy(Path(path) / "status.npy", dtype=np.int8, fix=_NEW_OUT)
    status[np.asarray(rows, dtype=np.int64)] = 0
    atomic_save_npy(Path(path) / "status.npy", status)


def _create(out: Path, meta: dict, targets: np.ndarray, old: GradientStore | None = None) -> None:
    """Allocate the arrays for `targets`; rows of `old` (a prefix of `targets`) are copied over.

    The gradient file is checked against the free space and allocated on disk (`posix_fallocate`) before a
    byte is written into it, so a full disk is an OSError here, never a SIGBUS later; the old store stays.
    """
    n, dim = len(targets), meta["dim"]
    if dim * n * 4 > 64e9:
        raise ValueError(f"exact gradients need {dim * n * 4 / 1e9:.0f} GB; pass projection_dim > 0")
    tmp = out / ".gradients.npy.tmp"
    what = f"the gradient store ({n} rows × {dim} numbers)"
    check_free_space(out, dim * n * 4 + 64 * n + (1 << 20), what=what)
    try:
        grads = np.lib.format.open_memmap(tmp, "w+", np.float32, (n, dim))
        if hasattr(os, "posix_fallocate"):
            with open(tmp, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"{what} needs {dim * n * 4 / 1e6:.1f} MB free in {out}: free space and "
                                        "rerun (rows already captured are kept)", str(out)) from None
        raise
    status, losses = np.zeros(n, np.int8), np.zeros(n, np.float32)
    sums = np.zeros((n, 4), np.uint32)
    if old is not None:
        k = len(old.targets)
        for lo in range(0, k, 4096):
            grads[lo: min(k, lo + 4096)] = old.gradients[lo: min(k, lo + 4096)]
        status[:k], losses[:k], sums[:k] = old.status, old.losses, old.checksums
    grads.flush()
    del grads
    atomic_save_npy(out / "status.npy", np.zeros(n, np.int8))  # nothing counts as done until the last write
    tmp.replace(out / "gradients.npy")
    atomic_save_npy(out / "losses.npy", losses)
    atomic_save_npy(out / "targets.npy", targets)
    atomic_save_npy(out / "checksums.npy", sums)
    atomic_write_json(out / "capture.json", {**meta, "n": n, "checksums": _CHECKSUMS})
    atomic_save_npy(out / "status.npy", status)


def capture_gradients(model, docs: Sequence[np.ndarray], targets: np.ndarray, out: str | Path, *,
                      params: str = "all", projection_dim: int | None = DEFAULT_PROJECTION_DIM,
                      matrix_sketch_dim: int = DEFAULT_MATRIX_DIM, batch_tokens: int = 1024, seed: int = 0,
                      show_progress: bool = True, recapture: bool = False,
                      shared_windows: bool = False) -> GradientStore:
    """Per-token gradients for `targets` ((doc, start, pos) rows) streamed to the store folder `out`.

    A rerun resumes: finished rows are kept, pending ones (a kill) are captured. A rerun whose `targets`
    extend the stored ones (same rows first) captures only the new rows. Batches group windows of similar
    length, ≤ `batch_tokens` tokens. Each row's checksums are recorded with it (see the module docstring).

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
    recapture : bool
        Rows of the stored capture that differ from their checksums are captured again (otherwise such a
        store is refused with `DamagedRowsError`).
    shared_windows : bool
        Targets sharing a window (doc, start) share its forward (`doc.shared_prefix_gradients`), batched by
        whole windows (`doc.window_groups`): the paper's long contexts (`doc.doc_windows`) at a fraction of the
        per-window cost; rows equal the per-window path's (losses to float rounding).

    Returns
    -------
    GradientStore
        The store at `out`, reopened.

    Raises
    ------
    ValueError
        `out` holds gradients captured with other settings or other targets; exact gradients would exceed
        64 GB; a window is empty (start ≥ pos) or runs outside its document; with `shared_windows`, a window
        is longer than the model's n_ctx.
    DamagedFileError, DamagedRowsError
        A file of the store in `out` is damaged (see `GradientStore`).
    OSError
        errno ENOSPC: the disk has no room for the store; what was captured is kept for a rerun.
    FolderBusyError
        Another process is capturing into `out`.
    ParameterError
        `params` is not a preset or regex, or matches no matrix; `projection_dim` is negative or not an
        integer; `matrix_sketch_dim` is not a positive integer; with `shared_windows`, `batch_tokens` is
        below the longest window (the message names that minimum).
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
    if shared_windows:
        window_groups(targets, batch_tokens)  # batch_tokens below the longest window: refused before any write
    with RunLock(out):
        return _capture(model, docs, targets, out, cap, meta, batch_tokens, show_progress, recapture, shared_windows)


def _capture(model, docs, targets, out: Path, cap, meta: dict, batch_tokens: int, show_progress: bool,
             recapture: bool, shared_windows: bool) -> GradientStore:
    if recapture:
        recapture_damaged(out)
    old = open_store(out)
    if old is not None:
        same = {k: old.meta.get(k) for k in meta} == meta  # extra bookkeeping keys (n, shards) do not count
        k = len(old.targets)
        if not same or k > len(targets) or not np.array_equal(old.targets, targets[:k]):
            raise ValueError(f"{out} holds gradients captured with other settings or tokens; use another folder")
        if k < len(targets):
            _create(out, meta, targets, old)
    else:
        _create(out, meta, targets)
    grads = np.load(out / "gradients.npy", mmap_mode="r+")
    status, losses = np.load(out / "status.npy"), np.load(out / "losses.npy")
    sums = np.load(out / "checksums.npy")
    todo = np.flatnonzero(status == 0)
    bar = progress(total=len(targets), initial=len(targets) - len(todo), desc="per-token gradients", unit="tok",
                   disable=not show_progress)
    try:
        batches = (window_groups(targets[todo], batch_tokens) if shared_windows
                   else length_batches(targets[todo, 2] - targets[todo, 1], batch_tokens))
        for batch in batches:
            rows = np.sort(todo[batch])
            vec, loss = (shared_prefix_gradients(model, cap, docs, targets[rows]) if shared_windows
                         else per_token_gradients(model, cap, *window_batch(docs, targets[rows])))
            finite = torch.isfinite(vec).all(1) & torch.isfinite(loss)
            grads[rows] = torch.where(finite[:, None], vec, 0.0).numpy()
            grads.flush()
            losses[rows], status[rows] = loss.numpy(), np.where(finite.numpy(), 1, -1)
            sums[rows] = row_checksums(grads, status, losses, targets, rows)
            atomic_save_npy(out / "checksums.npy", sums)
            atomic_save_npy(out / "losses.npy", losses)
            atomic_save_npy(out / "status.npy", status)  # written last: a kill never marks a row it lost
            bar.update(len(rows))
    finally:
        bar.close()
    return GradientStore(out, verify=False)  # its rows were checksummed as they were written
