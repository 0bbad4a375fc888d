"""Per-token gradients of a language model from context windows, B of them per backward pass.

In a causal LM the tokens after a target do not affect its loss, so each target's context is a window
`doc[start:pos]` ending just before it, and only the window's last position is supervised: the
per-window gradient *is* the per-target gradient, and a batch of B windows gives B gradients from one
backward pass (Michaud et al. 2023 ran one forward+backward of the whole document per token).
Windows of different lengths are right-padded; padding comes after the supervised position, so it
never reaches the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .hooks import GradientCapture, activation_grads_only
from .modules import is_unembedding, select_modules

__all__ = ["length_batches", "window_batch", "window_losses", "logits_at", "per_token_gradients", "per_sample_gradients",
           "forward_backward_floor"]


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


def window_batch(docs: Sequence[np.ndarray], rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded windows for targets given as (doc, start, pos) rows.

    Parameters
    ----------
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document.
    rows : int ndarray (B, 3)
        (doc, start, pos): the window `docs[doc][start:pos]` predicts token `pos`.

    Returns
    -------
    windows : int64 (B, T)
        `docs[doc][start:pos]`, padded with 0 up to the longest window T.
    lengths : int64 (B,)
        pos − start, the number of real tokens in each window.
    targets : int64 (B,)
        `docs[doc][pos]`, the token each window predicts.

    Raises
    ------
    ValueError
        No rows, a window is empty (start ≥ pos), or it runs outside its document.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    lengths = rows[:, 2] - rows[:, 1]
    if len(rows) == 0 or lengths.min() < 1:
        raise ValueError("windows: every target needs start < pos (at least one token of context)")
    out = np.zeros((len(rows), int(lengths.max())), dtype=np.int64)
    ys = np.empty(len(rows), dtype=np.int64)
    for i, (d, s, p) in enumerate(rows):
        if not 0 <= d < len(docs):
            raise ValueError(f"windows: target document {d} does not exist ({len(docs)} documents); the corpus "
                             "differs from the one the targets came from")
        doc = docs[int(d)]
        if s < 0 or p >= len(doc):
            raise ValueError(f"windows: target (doc {d}, start {s}, pos {p}) lies outside the document "
                             f"({len(doc)} tokens); the corpus or tokenizer differs from the one targets came from")
        out[i, : p - s] = doc[s:p]
        ys[i] = doc[p]
    return torch.from_numpy(out), torch.from_numpy(lengths), torch.from_numpy(ys)


def logits_at(model, windows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Logits at chosen positions only, float (B, K, V): the unembedding, when an `nn.Linear`, is fed only
    `positions` (int64 (B, K), indices into each row of `windows` (B, T)), so the (B, T, V) logits never exist."""
    device = next(model.parameters()).device
    positions = positions.to(device)
    rows = torch.arange(len(positions), device=device)[:, None]

    def keep(mod, args):
        return (args[0][rows, positions], *args[1:])

    handles = [m.register_forward_pre_hook(keep) for name, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and is_unembedding(name)]
    try:
        logits = model(windows.to(device))
    finally:
        for h in handles:
            h.remove()
    return logits if handles else logits[rows, positions]  # a model without a linear unembedding


def _loss_at_last_position(model, windows: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = logits_at(model, windows, (lengths - 1)[:, None])
    return torch.nn.functional.cross_entropy(logits[:, 0].float(), targets.to(logits.device), reduction="none")


def window_losses(model, docs: Sequence[np.ndarray], rows: np.ndarray, *, batch_tokens: int = 1024,
                  progress: bool = False, desc: str = "window losses") -> np.ndarray:
    """Loss of each target given its window, forward only: what `per_token_gradients` returns as losses,
    for another model of the same tokenizer (e.g. every member of a model family on QDG's targets).

    Windows longer than the model's n_ctx keep their last n_ctx tokens.

    Parameters
    ----------
    model : TransformerBridge (or any causal LM returning logits (B, T, V) with a `cfg.n_ctx`)
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document.
    rows : int ndarray (n, 3)
        (doc, start, pos) targets, as in `window_batch`.
    batch_tokens : int
        Bound on windows × longest window per forward pass (`length_batches`).

    Returns
    -------
    float32 ndarray (n,)
        Loss in nats of each target, in the order of `rows`.

    Raises
    ------
    ValueError
        As `window_batch`: an empty window or one outside its document.
    """
    from ..io import progress as _progress

    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3).copy()
    n_ctx = int(model.cfg.n_ctx)
    rows[:, 1] = np.maximum(rows[:, 1], rows[:, 2] - n_ctx)
    out = np.full(len(rows), np.nan, dtype=np.float32)
    bar = _progress(total=len(rows), desc=desc, unit="tok", disable=not progress)
    with torch.inference_mode():
        for batch in length_batches(rows[:, 2] - rows[:, 1], batch_tokens):
            out[batch] = _loss_at_last_position(model, *window_batch(docs, rows[batch])).float().cpu().numpy()
            bar.update(len(batch))
    bar.close()
    return out


def per_token_gradients(model, capture: GradientCapture, windows: torch.Tensor, lengths: torch.Tensor,
                        targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of each window's last-position loss w.r.t. the captured weights, from one backward.

    Only the last real position of each window is supervised, so each window's gradient is its target's
    gradient; weights are frozen during the pass (`activation_grads_only`), the hooks of `capture` read
    Σ_s g_s a_sᵀ per window, and no parameter `.grad` is written.

    Parameters
    ----------
    model : TransformerBridge (or any causal LM returning logits (B, T, V))
        Its unembedding, when an `nn.Linear`, sees only the supervised positions.
    capture : GradientCapture
        Over modules of `model`; its `valid` is set for the pass and reset to None.
    windows, lengths, targets
        As returned by `window_batch`: int64 (B, T), (B,), (B,).

    Returns
    -------
    gradients : float32 (B, capture.dim), on the CPU
    losses : float32 (B,), nats, on the CPU

    Raises
    ------
    RuntimeError
        A captured matrix received no gradient (the forward does not use it).
    """
    device = next(model.parameters()).device
    capture.valid = (torch.arange(windows.shape[1]) < lengths[:, None]).to(device) \
        if int(lengths.min()) < windows.shape[1] else None
    try:
        with activation_grads_only(model), capture, torch.enable_grad():
            losses = _loss_at_last_position(model, windows, lengths, targets)
            losses.sum().backward()
            vectors = capture.vectors()
    finally:
        capture.valid = None
    return vectors.float().cpu(), losses.detach().float().cpu()


def forward_backward_floor(model, windows: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The same forward + backward as `per_token_gradients` with nothing captured (activation gradients
    only): the floor any per-token gradient engine is measured against. Returns the losses.

    Returns
    -------
    float32 tensor (B,)
        Each window's last-position loss in nats, on the CPU.
    """
    with activation_grads_only(model), torch.enable_grad():
        losses = _loss_at_last_position(model, windows, lengths, targets)
        losses.sum().backward()
    return losses.detach().cpu()


def per_sample_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, params: str = ".",
                         projection_dim: int | None = None, matrix_dim: int = 512, seed: int = 0) -> torch.Tensor:
    """Per-sample gradients of the cross-entropy of any classifier made of `nn.Linear` layers (e.g. the
    sparse-parity MLP), one backward for the batch: float32 (B, dim); `params` as in `select_modules`.

    The model's parameter gradients are set to None afterwards (any `.grad` held before is lost).

    Parameters
    ----------
    model : nn.Module
        Maps `x` to logits (B, C), each sample independently.
    x : float tensor (B, n_inputs)
        Inputs, on the model's device.
    y : int64 tensor (B,)
        Class ids in [0, C).
    params : str
        Which linear layers, as in `select_modules`; "." is every layer of `linear_modules`.
    projection_dim : int or None
        k for a `TensorSketch`; None or 0 for exact gradients.
    matrix_dim : int
        m, the buckets of each matrix's own sketch.
    seed : int
        Seeds the sketch's hashes.

    Returns
    -------
    float32 tensor (B, dim), on the model's device
        Gradient of each sample's loss (nats), in the layout of `GradientCapture.vectors`.

    Raises
    ------
    ParameterError
        `params` matches no linear layer, or a bad `projection_dim` or `matrix_dim`.
    RuntimeError
        A chosen layer received no gradient.
    """
    cap = GradientCapture.for_model(select_modules(model, params), projection_dim, matrix_dim=matrix_dim, seed=seed)
    with cap, torch.enable_grad():
        torch.nn.functional.cross_entropy(model(x), y, reduction="sum").backward()
    model.zero_grad(set_to_none=True)
    return cap.vectors()
