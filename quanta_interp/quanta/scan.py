"""Find low-loss tokens at forward speed: score whole blocks of the corpus, one forward per block.

Each document is cut into consecutive blocks of L tokens (`block_length`); a token's context is the part
of its block before it, so the loss the scan measures is exactly the loss of the window `doc[start:pos]`
whose gradient is taken later, and a forward over the block scores every one of its tokens at once
(the paper's whole-document context is L = 1024). Targets need ≥ `min_context` tokens of context; tokens
that complete a trigram already seen in their context (induction) are dropped, as in the paper.
Blocks are scanned in a seeded random order until enough candidates are found; the scan resumes after a
kill and continues when more tokens are asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io import DamagedFileError, atomic_save_npy, atomic_write_json, load_npy, progress, read_json

__all__ = ["DOC_CONTEXT", "block_length", "induction_mask", "blocks", "Scan", "scan_low_loss"]

DOC_CONTEXT = 1024  # the paper's cap on whole-document contexts


def block_length(context: int | str, n_ctx: int) -> tuple[int, str | None]:
    """(block length L, a note when it was capped): `context` tokens, or 'doc' = the paper's 1024, at most
    the model's n_ctx."""
    want = DOC_CONTEXT if context == "doc" else int(context)
    if want > n_ctx:
        return n_ctx, f"context {context} is longer than the model's n_ctx = {n_ctx}; capped at {n_ctx} tokens"
    return want, None


def induction_mask(doc: np.ndarray) -> np.ndarray:
    """bool (len(doc),): True at positions whose trigram (t[p−2], t[p−1], t[p]) already occurred earlier."""
    doc = np.asarray(doc, dtype=np.int64)
    mask = np.zeros(doc.size, dtype=bool)
    if doc.size < 3:
        return mask
    v = int(doc.max()) + 1
    keys = (doc[:-2] * v + doc[1:-1]) * v + doc[2:]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    mask[2:] = first[inverse] < np.arange(keys.size)
    return mask


def blocks(lengths: Sequence[int], block: int, min_context: int) -> np.ndarray:
    """int64 (n_blocks, 3) rows (doc, start, last target pos) of every block holding at least one target:
    targets of a block are pos ∈ [start + min_context, last]."""
    rows = []
    for d, n in enumerate(lengths):
        starts = np.arange(0, max(n - 1 - min_context, 0) + 1, block)
        starts = starts[starts + min_context <= n - 1]
        rows.append(np.stack([np.full(starts.size, d), starts, np.minimum(starts + block, n - 1)], 1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 3), np.int64)


@dataclass
class Scan:
    """What a scan has found so far.

    Attributes
    ----------
    candidates : int64 (m, 3)
        (doc, start, pos) of every token below the threshold, in scan order.
    losses : float32 (m,)
        Their losses, nats.
    tokens_scored, tokens_forwarded : int
        Targets scored (context ≥ min_context) and tokens run through the model.
    blocks_done, n_blocks : int
    seconds : float
        Time spent in forward passes and scoring.
    """

    candidates: np.ndarray
    losses: np.ndarray
    tokens_scored: int = 0
    tokens_forwarded: int = 0
    blocks_done: int = 0
    n_blocks: int = 0
    seconds: float = 0.0

    @property
    def exhausted(self) -> bool:
        return self.blocks_done >= self.n_blocks

    def save(self, folder: Path) -> None:
        atomic_save_npy(folder / "candidates.npy", self.candidates)
        atomic_save_npy(folder / "losses.npy", self.losses)
        atomic_write_json(folder / "state.json", {k: getattr(self, k) for k in (
            "tokens_scored", "tokens_forwarded", "blocks_done", "n_blocks", "seconds")} | {"n_candidates": len(self.losses)})

    @classmethod
    def load(cls, folder: Path, n_blocks: int) -> Scan:
        """The scan saved in `folder` (an empty one if none), its files checked.

        Raises
        ------
        DamagedFileError
            state.json, candidates.npy or losses.npy is missing, damaged, or shorter than the state says.
        """
        if not (folder / "state.json").exists():
            return cls(np.zeros((0, 3), np.int64), np.zeros(0, np.float32), n_blocks=n_blocks)
        fix = f"delete the folder {folder}: the scan is redone (the gradients already captured are kept)"
        state = read_json(folder / "state.json", expect=dict, fix=fix)
        keys = ("tokens_scored", "tokens_forwarded", "blocks_done", "n_candidates")
        if not all(isinstance(state.get(k), int) and state[k] >= 0 for k in keys) or not isinstance(
                state.get("seconds"), (int, float)):
            raise DamagedFileError(folder / "state.json", f"lacks the scan's {', '.join(keys)} or seconds", fix)
        m = state["n_candidates"]
        cand = load_npy(folder / "candidates.npy", dtype=np.int64, shape=(None, 3), fix=fix)
        loss = load_npy(folder / "losses.npy", dtype=np.float32, shape=(None,), fix=fix)
        for name, arr in (("candidates.npy", cand), ("losses.npy", loss)):
            if len(arr) < m:  # arrays are written before the state: never shorter
                raise DamagedFileError(folder / name, f"holds {len(arr)} rows, the state {m}", fix)
        return cls(cand[:m], loss[:m], state["tokens_scored"], state["tokens_forwarded"], state["blocks_done"],
                   n_blocks, state["seconds"])


def _block_losses(model, docs, chunk: np.ndarray) -> np.ndarray:
    """float32 (len(chunk), T): loss of predicting doc[start + 1 + i] from doc[start : start + 1 + i]."""
    import torch

    from ..lm.losses import next_token_losses

    width = int((chunk[:, 2] - chunk[:, 1]).max())
    batch = np.zeros((len(chunk), width + 1), dtype=np.int64)  # right padding: causal, never attended
    for i, (d, s, last) in enumerate(chunk):
        batch[i, : last - s + 1] = docs[d][s: last + 1]
    device = next(model.parameters()).device
    tokens = torch.from_numpy(batch).to(device)
    with torch.inference_mode():
        nll = next_token_losses(model(tokens[:, :-1], return_type="logits"), tokens[:, 1:])
    return nll.cpu().numpy()


def scan_low_loss(model, docs: Sequence[np.ndarray], folder: str | Path, *, n_needed: int, block: int,
                  min_context: int, loss_threshold: float, exclude_induction: bool = True, seed: int = 0,
                  batch_tokens: int = 1024, max_tokens: int | None = None, show_progress: bool = True) -> Scan:
    """Scan blocks in a seeded random order until `n_needed` candidates (loss < `loss_threshold` nats, not
    induction-predictable) are found, the corpus is exhausted or `max_tokens` targets were scored.

    The state in `folder` is saved every few seconds: a rerun resumes, and a rerun asking for more
    continues where the last stopped. `model` may be None when the folder already holds enough.
    Returns the `Scan` (candidates in scan order; there may be more than `n_needed`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = blocks([len(d) for d in docs], block, min_context)
    order = np.random.default_rng(seed).permutation(len(table))
    scan = Scan.load(folder, len(table))
    limit = max_tokens or np.inf
    if len(scan.losses) >= n_needed or scan.exhausted or scan.tokens_scored >= limit:
        return scan
    cands, losses = [scan.candidates], [scan.losses]
    n_found = len(scan.losses)
    bar = progress(total=n_needed, initial=min(n_found, n_needed), desc="scanning for low-loss tokens", unit="tok",
                   disable=not show_progress)
    saved = time.perf_counter()
    try:
        while n_found < n_needed and not scan.exhausted and scan.tokens_scored < limit:
            t0 = time.perf_counter()
            chunk = table[order[scan.blocks_done: scan.blocks_done + max(1, batch_tokens // block)]]
            nll = _block_losses(model, docs, chunk)
            for i, (d, s, last) in enumerate(chunk):
                pos = np.arange(s + min_context, last + 1)
                loss = nll[i, pos - s - 1]
                keep = loss < loss_threshold
                if exclude_induction:
                    keep &= ~induction_mask(docs[d][s: last + 1])[pos - s]
                cands.append(np.stack([np.full(keep.sum(), d), np.full(keep.sum(), s), pos[keep]], 1))
                losses.append(loss[keep].astype(np.float32))
                n_found += int(keep.sum())
                scan.tokens_scored += pos.size
                scan.tokens_forwarded += int(last - s)
            scan.blocks_done += len(chunk)
            scan.seconds += time.perf_counter() - t0
            bar.update(min(n_found, n_needed) - bar.n)
            bar.set_postfix(scanned=scan.tokens_scored, refresh=False)
            if time.perf_counter() - saved > 5:
                scan.candidates, scan.losses = np.concatenate(cands).astype(np.int64), np.concatenate(losses)
                scan.save(folder)
                saved = time.perf_counter()
    finally:
        bar.close()
        scan.candidates, scan.losses = np.concatenate(cands).astype(np.int64), np.concatenate(losses)
        scan.save(folder)
    return scan
