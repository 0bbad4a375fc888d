"""Per-token gradients at the paper's context: the targets of one document window share its forward.

Michaud et al. (2023) ran one forward + backward of the whole document per token. Here the targets of a
window `doc[start:…]` are forwarded together, once, and each target's own loss is backwarded through that
graph (`retain_graph`), activation gradients only, with the `GradientCapture` hooks reading Σ_s g_s a_sᵀ
over the target's prefix; in a causal LM the later positions change neither its loss nor its gradient, so
each row equals `per_token_gradients` on the window cut at the target.

A backward through a forward of P positions costs P positions even for a target at q < P, so targets far
before the window's end are given their own, shorter forward: `forward_groups` splits each window's
targets into prefix groups that minimise the cost (one forward costs about one backward per token,
measured on SmolLM2; at 512 and 1024 tokens, forward costs 0.15–1 gave 3–7 groups within ±5 % of one another
and up to 12 % faster than a single forward). Several targets per backward call with batched grad outputs
(`is_grads_batched`) were measured no faster (SmolLM2, 256 tokens, 8 targets, one CPU thread: 17–22 s
against 15–16 s for 8 separate backward calls) and need every layer's batched output gradient in memory,
so each target has its own backward call.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..config import ParameterError
from .hooks import GradientCapture, activation_grads_only
from .windows import logits_at, window_batch

__all__ = ["doc_windows", "window_groups", "forward_groups", "shared_prefix_gradients"]


def doc_windows(rows: np.ndarray, context: int) -> np.ndarray:
    """(doc, start, pos) rows with `start` set by the paper-context rule, so that targets share windows.

    With C = `context` (already capped at the model's n_ctx, e.g. by `quanta.scan.block_length`) and
    h = C // 2: a target at pos ≤ C sees its whole document before it, `doc[0:pos]`; a later one sees
    `doc[start:pos]` with start = h·⌊(pos − h)/h⌋, i.e. windows of C tokens start every h tokens and each
    target belongs to the window where it lies in the second half, so it keeps between h and 2h − 1 < C
    tokens of context (the paper: the preceding document, at most 1024 tokens).

    Parameters
    ----------
    rows : int ndarray (n, 3)
        (doc, start, pos); `start` is ignored.
    context : int
        C ≥ 2, the longest window.

    Returns
    -------
    int64 ndarray (n, 3)
        The same targets, same order, with the rule's `start`.

    Raises
    ------
    ParameterError
        `context` < 2.
    """
    if int(context) < 2:
        raise ParameterError("context", f"must be at least 2 tokens for shared windows, got {context}")
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3).copy()
    half = int(context) // 2
    pos = rows[:, 2]
    rows[:, 1] = np.where(pos <= context, 0, half * ((pos - half) // half))
    return rows


def window_groups(rows: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Indices into `rows` batched by shared window: every target of a window (doc, start) in one batch,
    whole windows packed until their tokens (longest pos − start of each) would pass `batch_tokens`.

    Parameters
    ----------
    rows : int ndarray (n, 3)
        (doc, start, pos) targets.
    batch_tokens : int
        Bound on the tokens forwarded per batch; one forward is one window, so it must hold the longest.

    Returns
    -------
    list of int64 ndarray
        Together a permutation of range(n), windows in (doc, start) order. Empty for n = 0.

    Raises
    ------
    ParameterError
        `batch_tokens` is smaller than the longest window (the message names that minimum).
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    if not len(rows):
        return []
    keys, inverse = np.unique(rows[:, :2], axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    tokens = np.zeros(len(keys), np.int64)
    np.maximum.at(tokens, inverse, rows[:, 2] - rows[:, 1])
    if tokens.max() > batch_tokens:
        raise ParameterError("batch_tokens", f"must be at least {int(tokens.max())}, the longest shared window "
                                             f"(one forward per window), got {batch_tokens}")
    batches, cur, used = [], [], 0
    for w in range(len(keys)):
        if cur and used + tokens[w] > batch_tokens:
            batches.append(np.concatenate(cur))
            cur, used = [], 0
        cur.append(np.flatnonzero(inverse == w))
        used += int(tokens[w])
    batches.append(np.concatenate(cur))
    return batches


def forward_groups(lengths: np.ndarray, forward_cost: float = 1.0) -> list[np.ndarray]:
    """Split targets of one window into prefix groups, each with its own forward, at the least cost.

    A group forwards its longest prefix P once and backwards each of its n targets through it:
    cost `forward_cost`·P + n·P (in backward-token units); groups of consecutive lengths minimise the sum
    exactly (dynamic programming, O(n²)).

    Parameters
    ----------
    lengths : int ndarray (n,)
        Each target's prefix length pos − start, ascending.
    forward_cost : float
        Cost of a forward token relative to a backward token (1.0 measured on SmolLM2 on the CPU).

    Returns
    -------
    list of int64 ndarray
        Consecutive index ranges covering range(n), shortest prefixes first.
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    n = len(lengths)
    best, cut = np.zeros(n + 1), np.zeros(n + 1, np.int64)
    for j in range(1, n + 1):
        costs = best[:j] + (forward_cost + j - np.arange(j)) * lengths[j - 1]
        cut[j] = int(np.argmin(costs))
        best[j] = costs[cut[j]]
    groups, j = [], n
    while j > 0:
        groups.append(np.arange(cut[j], j))
        j = cut[j]
    return groups[::-1]


def shared_prefix_gradients(model, capture: GradientCapture, docs: Sequence[np.ndarray], rows: np.ndarray, *,
                            forward_cost: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients and losses of (doc, start, pos) targets, one forward per group of targets sharing a window.

    Targets with the same (doc, start) share forwards (`forward_groups`); each target's loss is then
    backwarded on its own through the retained graph, activation gradients only, the hooks of `capture`
    reading its first pos − start positions. Row i equals `per_token_gradients` on the window
    `docs[doc][start:pos]` (to float rounding) and so does its loss. A drop-in for `capture_gradients`'
    batch step: `shared_prefix_gradients(model, cap, docs, targets[rows])`.

    Parameters
    ----------
    model : TransformerBridge (or any causal LM returning logits (1, T, V))
        Its unembedding, when an `nn.Linear`, sees only the supervised positions.
    capture : GradientCapture
        Over modules of `model`; its `retain` and `positions` are set for the call and reset.
    docs : sequence of int ndarray (T_d,)
        Token ids, one array per document.
    rows : int ndarray (n, 3)
        (doc, start, pos) targets; see `doc_windows` for the paper-context rule that makes them share.
    forward_cost : float
        As in `forward_groups`.

    Returns
    -------
    (gradients, losses) : float32 tensors (n, capture.dim) and (n,) in nats, on the CPU, as `per_token_gradients`

    Raises
    ------
    ValueError
        As `window_batch` (an empty window, one outside its document), or a window longer than the model's
        n_ctx (cut the rows with `doc_windows` at a context ≤ n_ctx).
    RuntimeError
        A captured matrix received no gradient.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1, 3)
    windows, lengths, ys = window_batch(docs, rows)
    n_ctx = getattr(getattr(model, "cfg", None), "n_ctx", None)
    if n_ctx is not None and int(lengths.max()) > n_ctx:
        raise ValueError(f"shared windows: a window of {int(lengths.max())} tokens is longer than the model's n_ctx = "
                         f"{n_ctx}; cut the targets with doc_windows(rows, {n_ctx})")
    vectors, losses = torch.zeros(len(rows), capture.dim), torch.zeros(len(rows))
    _, window = np.unique(rows[:, :2], axis=0, return_inverse=True)
    window = window.reshape(-1)
    with activation_grads_only(model), capture, torch.enable_grad():
        capture.retain = True
        try:
            for w in range(int(window.max()) + 1):
                idx = np.flatnonzero(window == w)
                idx = idx[np.argsort(lengths[idx].numpy(), kind="stable")]
                for group in forward_groups(lengths[idx].numpy(), forward_cost):
                    members = torch.from_numpy(idx[group])
                    top = int(members[-1])
                    capture.reset()
                    logits = logits_at(model, windows[top: top + 1, : int(lengths[top])], lengths[members][None] - 1)
                    loss = torch.nn.functional.cross_entropy(logits[0].float(), ys[members].to(logits.device),
                                                             reduction="none")
                    for j, i in enumerate(members.tolist()):
                        capture.positions = int(lengths[i])
                        loss[j].backward(retain_graph=j < len(members) - 1)
                        vectors[i] = capture.pop()[0].float().cpu()
                    losses[members] = loss.detach().float().cpu()
        finally:
            capture.retain, capture.positions = False, None
    return vectors, losses
